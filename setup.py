"""Installs the mep_agent package and its twistd plugin drop-ins."""

from setuptools import find_packages, setup

setup(
    name="mep-agent",
    version="0.1.0",
    description="ETSI MEC sidecar: MEP token, Mp1 service registration, heartbeats, discovery",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # "twisted.plugins" is listed so that the drop-in file is installed into Twisted's
    # plugin directory; the tree deliberately has no twisted/__init__.py.
    packages=find_packages(exclude=["tests", "tests.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/mep_agent_plugin.py", "plugins/mep_emulator_plugin.py"]},
    install_requires=[
        "Twisted[tls]>=23.10",
        "klein>=23.5",
        "treq>=23.11",
        "PyYAML>=6.0",
        "pyOpenSSL>=23.2",
        "service-identity>=23.1",
        "attrs>=23.1",
        "prometheus_client>=0.19",
        "trustme>=1.1",
    ],
    extras_require={
        "test": ["hypothesis>=6.90"],
        "dev": ["hypothesis>=6.90", "mypy>=1.8", "mypy-zope", "ruff>=0.4", "types-PyYAML"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
    ],
)

"""Installs the mep_agent package and its twistd plugin drop-ins."""

import re

from setuptools import find_packages, setup


def version() -> str:
    # The one version source is mep_agent/__init__.py; read as text, because the
    # package's dependencies are not installed while it is being built.
    with open("mep_agent/__init__.py", encoding="utf-8") as f:
        match = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError("mep_agent/__init__.py has no __version__")
    return match.group(1)


with open("README.md", encoding="utf-8") as readme:
    long_description = readme.read()

TEST = [
    "hypothesis>=6.90",
    "openapi-schema-validator>=0.6",
    "jsonschema>=4.18",
    "kubernetes-validate>=1.28",
    "promql-parser>=0.11",  # deploy/'s dashboard and alerting rules checked as PromQL
]
LINT = [
    "mypy>=1.8",
    "mypy-zope>=1.0",
    "ruff>=0.4",
    "types-PyYAML",
    "types-jsonschema",
    "towncrier>=23.6",
    "build>=1.0",
    "twine>=5.0",
]

setup(
    name="mep-agent",
    version=version(),
    description="ETSI MEC sidecar: MEP token, Mp1 service registration, heartbeats, discovery",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # "twisted.plugins" is listed so that the drop-in file is installed into Twisted's
    # plugin directory; the tree deliberately has no twisted/__init__.py.
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks", "benchmarks.*"])
    + ["twisted.plugins"],
    package_data={
        "twisted": ["plugins/mep_agent_plugin.py", "plugins/mep_emulator_plugin.py"],
        "mep_agent": ["py.typed"],
    },
    install_requires=[
        "Twisted[tls]>=23.10",
        "klein>=23.5",
        "werkzeug>=2.2",  # klein's routing; imported for its HTTP exceptions
        "treq>=23.11",
        "PyYAML>=6.0",
        "pyOpenSSL>=23.2",
        "service-identity>=23.1",
        "cryptography>=41",  # also pyOpenSSL's; the emulator makes its certificates with it
        "attrs>=23.1",
        "prometheus_client>=0.19",
    ],
    extras_require={"test": TEST, "dev": TEST + LINT},
    # `mep-agent` is `twistd -n --pidfile= mep-agent` with the stop signals taken before
    # Twisted loads (mep_agent/run.py): the image's entry point.
    entry_points={"console_scripts": ["mep-agent = mep_agent.run:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Typing :: Typed",
    ],
)

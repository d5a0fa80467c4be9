# mep-agent sidecar image. Built and run by scripts/image-test (podman or docker):
#   podman build --build-arg BASE_IMAGE=python:3.11-slim --build-arg VERSION=0.1.0 -t mep-agent .
# Any base with python3 and its venv module works (scripts/image-test makes a Debian one when
# no registry can be reached). Stage 1 builds wheels; stage 2 installs them into a venv
# without a compiler or the network, and runs as a non-root user on a read-only root.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY setup.py pyproject.toml README.md ./
COPY mep_agent ./mep_agent
COPY twisted ./twisted
# The index is reached with the builder's pip configuration (mounted by scripts/image-test
# when there is one); nothing of it is baked into the image.
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE_IMAGE}
# The package's version (mep_agent/__init__.py), so that a plain build is labelled right;
# tests/test_docs.py fails when the two differ.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mep-agent" \
      org.opencontainers.image.description="ETSI MEC sidecar: MEP token, Mp1 registration, heartbeats, discovery" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /wheels /wheels
# Install without the network, then build Twisted's plugin cache while the venv is still
# writable: at run time the root file system is read-only and the user not root.
RUN python3 -m venv /opt/mep-agent \
    && /opt/mep-agent/bin/pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && /opt/mep-agent/bin/python -c \
        "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && mkdir -p /usr/mep/conf /usr/mep/ssl
# Only the TLS settings: app_instance_info.yaml is the pod's to mount (the seed mounts it
# here); without it the agent stops with a clear error instead of registering a sample.
COPY conf/app_conf.yaml /usr/mep/conf/
WORKDIR /usr/mep
ENV PATH=/opt/mep-agent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    MEP_AGENT_CONF_DIR=/usr/mep/conf \
    MEP_AGENT_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 9090
# twistd -n --pidfile= mep-agent, with SIGTERM taken before Twisted loads (mep_agent/run.py)
ENTRYPOINT ["mep-agent"]

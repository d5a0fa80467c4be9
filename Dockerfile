# mep-agent sidecar image. Build: docker build -t mep-agent .
# Stage 1 builds wheels; stage 2 installs them without build tools and runs as non-root.
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.py pyproject.toml README.md ./
COPY mep_agent ./mep_agent
COPY twisted ./twisted
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /usr/mep --shell /usr/sbin/nologin mep
COPY --from=build /wheels /wheels
# Install, then regenerate Twisted's plugin cache while the site-packages are writable:
# at run time the non-root user could not write it and would rescan on every start.
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    && mkdir -p /usr/mep/conf /usr/mep/ssl
# Only the TLS settings: app_instance_info.yaml is the pod's to mount (the seed mounts it
# here); without it the agent stops with a clear error instead of registering a sample.
COPY conf/app_conf.yaml /usr/mep/conf/
WORKDIR /usr/mep
ENV MEP_AGENT_CONF_DIR=/usr/mep/conf \
    MEP_AGENT_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080 9090
ENTRYPOINT ["twistd", "-n", "--pidfile=", "mep-agent"]

# syntax=docker/dockerfile:1
#
# tenantgw container image.
#   docker build -t tenantgw .
#   docker run --rm -p 8080:8080 -p 8443:8443 tenantgw --source kubernetes
# Arguments after the image name are options of `twistd tenantgw` (contract
# section 8).  The admin listener defaults to 127.0.0.1:9090; in a cluster, pass
# --admin tcp:9090 so that kubelet probes and Prometheus can reach it.

ARG PYTHON_IMAGE=python:3.12-slim

# ---- build: the wheel --------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install build
COPY pyproject.toml setup.cfg README.md ./
COPY src ./src
COPY twisted ./twisted
# The wheel must ship the dropin but never twisted/__init__.py nor
# twisted/plugins/__init__.py (either would shadow Twisted itself).
RUN python -m build --wheel --outdir /dist . \
 && python -c "import glob, zipfile; \
names = set(zipfile.ZipFile(glob.glob('/dist/*.whl')[0]).namelist()); \
assert 'twisted/plugins/tenantgw_plugin.py' in names, sorted(names); \
bad = names & {'twisted/__init__.py', 'twisted/plugins/__init__.py', 'twisted/plugins/dropin.cache'}; \
assert not bad, bad"

# ---- runtime -----------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 tenantgw \
 && useradd --system --uid 10001 --gid tenantgw --home-dir /var/lib/tenantgw \
        --create-home --shell /usr/sbin/nologin tenantgw

COPY --from=build /dist/*.whl /tmp/wheels/
# As root: install, then regenerate Twisted's dropin cache (site-packages is
# read-only for the runtime user, so it could not be written later) and check
# that twistd lists the plugin.
RUN python -m pip install /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && twistd --help | grep -qE '^\s+tenantgw\s'

USER 10001:10001
WORKDIR /var/lib/tenantgw
EXPOSE 8080 8443 9090
# --pidfile= : no pid file (pointless in a container, and the cwd may be read-only).
# -n : stay in the foreground and log to stdout.
ENTRYPOINT ["twistd", "-n", "--pidfile=", "tenantgw"]

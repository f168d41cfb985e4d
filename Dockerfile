# syntax=docker/dockerfile:1
#
# tenantgw container image.
#   docker build -t tenantgw:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run --rm -p 8080:8080 -p 8443:8443 tenantgw:0.1.0 --source kubernetes
# Arguments after the image name are options of `twistd tenantgw` (see
# docs/reference.md).  The admin listener defaults to 127.0.0.1:9090; in a
# cluster, pass --admin tcp:9090 so that kubelet probes and Prometheus reach it.
#
# Reproducible builds:
# - The base image.  PYTHON_IMAGE names the Python minor version and Debian
#   release; its tag moves with patch releases, so a release build pins it by
#   digest: `bash scripts/pin-base-image.sh` looks up the tag's current digest
#   (docker buildx imagetools, crane or skopeo; needs the registry) and writes
#   `python:X.Y-slim-bookworm@sha256:...` into the ARG below.  Run it again to
#   take a newer base (security updates), and commit the change; or pass
#   --build-arg PYTHON_IMAGE=python:...@sha256:... for one build.  The Python
#   minor version here must be one tox tests (tox.ini env_list): a test checks.
# - Python dependencies come from constraints.txt (every runtime dependency
#   pinned, written by scripts/update-constraints.py from the development
#   venv); the build fails if pip installed anything that file does not pin.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

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
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tenantgw" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 tenantgw \
 && useradd --system --uid 10001 --gid tenantgw --home-dir /var/lib/tenantgw \
        --create-home --shell /usr/sbin/nologin tenantgw

COPY --from=build /dist/*.whl /tmp/wheels/
COPY constraints.txt /tmp/constraints.txt
# As root: install with every dependency at its pinned version, refuse an
# unpinned one, then regenerate Twisted's dropin cache (site-packages is
# read-only for the runtime user, so it could not be written later) and check
# that twistd lists the plugin.  The help text is captured, then searched:
# `twistd --help | grep -q` fails at random under pipefail when grep exits
# before twistd's last write (EPIPE).
RUN python -m pip install --constraint /tmp/constraints.txt /tmp/wheels/*.whl \
 && python -m pip check \
 && python -c "import importlib.metadata as m, re, sys; \
canon = lambda n: re.sub(r'[-_.]+', '-', n).lower(); \
pins = {canon(l.split('==')[0]): l.split('==')[1].strip() for l in open('/tmp/constraints.txt') if '==' in l}; \
ours = {'tenantgw', 'pip', 'setuptools', 'wheel'}; \
loose = sorted(f'{d.metadata[\"Name\"]}=={d.version}' for d in m.distributions() \
    if canon(d.metadata['Name']) not in ours and pins.get(canon(d.metadata['Name'])) != d.version); \
sys.exit('not pinned by constraints.txt: ' + ', '.join(loose) if loose else 0)" \
 && rm -rf /tmp/wheels /tmp/constraints.txt \
 && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && help_text="$(twistd --help)" \
 && printf '%s\n' "$help_text" | grep -E '^\s+tenantgw\s' >/dev/null \
 && tenantgw --version

USER 10001:10001
WORKDIR /var/lib/tenantgw
EXPOSE 8080 8443 9090
# --pidfile= : no pid file (pointless in a container, and the cwd may be read-only).
# -n : stay in the foreground and log to stdout.
ENTRYPOINT ["twistd", "-n", "--pidfile=", "tenantgw"]

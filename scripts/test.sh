#!/usr/bin/env bash
# Run tenantgw's whole test matrix: trial on Python 3.10-3.13, ruff, mypy.
#
#   bash scripts/test.sh                 # everything (what CI runs)
#   bash scripts/test.sh -e py311        # any tox arguments
#   bash scripts/test.sh -e py311 -- tests.test_plugin_discovery
#
# Idempotent, and does all the set-up a fresh Debian machine needs:
#   1. installs the system packages the tests use, if missing (apt-get; root or sudo);
#   2. exposes python3.10 .. python3.13 from pyenv (PYENV_VERSION), if pyenv is there;
#   3. installs tox into .tox/_bootstrap (a private venv);
#   4. runs tox with the given arguments.
#
# Environment: TENANTGW_APT_PACKAGES (override the package list),
# TENANTGW_TRIAL_JOBS (trial --jobs, default 4: many tests wait on sockets and
# child processes, so four workers on two cores finish about 25% sooner).
# Arguments go to tox.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '==> %s\n' "$*" >&2; }

# --- 1. system packages -----------------------------------------------------
# name-of-command:debian-package.  Keep to what the tests actually use.
# nginx: the Ingress corpus's oracle (tests/test_ingress_nginx_oracle.py).
APT_NEEDS="${TENANTGW_APT_PACKAGES:-redis-server:redis-server curl:curl openssl:openssl chromium:chromium kubectl:kubernetes-client nginx:nginx}"
missing=()
for pair in $APT_NEEDS; do
    cmd="${pair%%:*}"
    pkg="${pair#*:}"
    # /usr/sbin (nginx) is not on a non-root user's PATH on Debian.
    command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=()
    can_install=false
    if command -v apt-get >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]]; then
            can_install=true
        elif command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
            can_install=true
        fi
    fi
    if $can_install; then
        log "installing system packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        log "WARNING: missing system packages (${missing[*]}); install them to run every test"
    fi
fi

# --- 2. Python interpreters -------------------------------------------------
# tox looks for python3.10 .. python3.13 on PATH.  With pyenv, a shim exists for
# each, but only resolves when its version is selected: select the newest
# installed patch release of each minor version, current default first.
if command -v pyenv >/dev/null 2>&1; then
    versions=()
    current="$(pyenv version-name 2>/dev/null | cut -d: -f1 || true)"
    if [[ -n "$current" && "$current" != system ]]; then
        versions+=("$current")
    fi
    for minor in 3.10 3.11 3.12 3.13; do
        newest="$(pyenv versions --bare --skip-aliases 2>/dev/null |
            grep -E "^${minor//./\\.}\.[0-9]+$" | sort -t. -k3,3n | tail -n1 || true)"
        if [[ -n "$newest" && " ${versions[*]-} " != *" $newest "* ]]; then
            versions+=("$newest")
        fi
    done
    if ((${#versions[@]})); then
        PYENV_VERSION="$(IFS=:; echo "${versions[*]}")"
        export PYENV_VERSION
        log "PYENV_VERSION=$PYENV_VERSION"
    fi
fi
for minor in 3.10 3.11 3.12 3.13; do
    if ! command -v "python$minor" >/dev/null 2>&1 || ! "python$minor" -c '' >/dev/null 2>&1; then
        log "WARNING: python$minor not found; tox will fail for py${minor//./}"
    fi
done

# --- 3. tox -----------------------------------------------------------------
BOOT="$ROOT/.tox/_bootstrap"
BOOT_PY=""
for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
        BOOT_PY="$candidate"
        break
    fi
done
if [[ -z "$BOOT_PY" ]]; then
    log "need Python >= 3.10 to run tox"
    exit 1
fi
if ! "$BOOT/bin/python" -m tox --version >/dev/null 2>&1; then
    log "installing tox into $BOOT"
    rm -rf "$BOOT"
    "$BOOT_PY" -m venv "$BOOT"
    "$BOOT/bin/python" -m pip install --quiet --upgrade pip
    "$BOOT/bin/python" -m pip install --quiet 'tox>=4.11,<5'
fi

# --- 4. run -----------------------------------------------------------------
# setuptools builds the wheel through build/lib and never deletes stale files
# there: start clean so a removed module cannot linger in the tested wheel.
rm -rf "$ROOT/build"
log "tox $*"
exec "$BOOT/bin/python" -m tox "$@"

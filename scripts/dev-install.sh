#!/usr/bin/env bash
# Development install of tenantgw into a virtualenv (default: .venv).
#
#   bash scripts/dev-install.sh [VENV_DIR]
#   bash scripts/dev-install.sh --check [VENV_DIR]   # only check that twistd lists tenantgw
#
# Idempotent: creates the venv if needed, (re)installs tenantgw in editable mode
# with the test and dev extras, and makes the twistd dropin visible.
#
# Why more than `pip install -e .`?  The dropin lives in a top-level
# twisted/plugins/ directory without __init__.py.  Twisted finds dropins by
# scanning every sys.path entry for a twisted/plugins/ directory
# (twisted.plugin.pluginPackagePaths).  A PEP 660 editable install exposes
# tenantgw through an import hook (default mode) or puts only src/ on sys.path
# (compat mode), so `twistd --help` would not list tenantgw.  So after the
# editable install we add one .pth entry: a directory inside the venv whose only
# content is a symlink `twisted -> <checkout>/twisted`.  Twisted then finds
# <that dir>/twisted/plugins/tenantgw_plugin.py, live from the checkout, while
# `import twisted` still gets the real Twisted (a regular package beats a
# namespace portion wherever it is on sys.path).
# (`pip install -e . --config-settings editable_mode=strict` also works, but its
# link tree must be reinstalled whenever a module is added.)
#
# Environment: PYTHON (interpreter for a new venv, default: first of python3,
# python3.13 .. python3.10 that is >= 3.10), EXTRAS (default: test,dev).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check_only=false
if [[ "${1:-}" == "--check" ]]; then
    check_only=true
    shift
fi
VENV="${1:-$ROOT/.venv}"
[[ "$VENV" == /* ]] || VENV="$PWD/$VENV"
EXTRAS="${EXTRAS-test,dev}"

# Does `twistd --help` list tenantgw?  The output is captured whole first and
# searched afterwards: piping twistd into `grep -q` under pipefail fails at
# random, because grep exits at the first match and twistd's next write (with
# PYTHONUNBUFFERED=1, print() writes the text and its newline separately)
# gets EPIPE, so twistd exits 1 and pipefail reports the pipeline as failed.
# Run from / so that a tenantgw/ or twisted/ in the current directory cannot
# be what twistd finds.
plugin_listed() {
    local venv="$1" help_text
    if ! help_text="$(cd / && "$venv/bin/twistd" --help 2>&1)"; then
        printf 'dev-install: %s/bin/twistd --help failed:\n%s\n' "$venv" "$help_text" >&2
        return 1
    fi
    # No -q: grep reads all of its input, and it comes from a variable.
    grep -E '^\s+tenantgw\s' >/dev/null <<<"$help_text"
}

if $check_only; then
    if ! plugin_listed "$VENV"; then
        echo "dev-install: twistd --help does not list tenantgw" >&2
        exit 1
    fi
    echo "dev-install: twistd in $VENV lists tenantgw"
    exit 0
fi

is_ok_python() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
        return
    fi
    local candidate
    for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
        if command -v "$candidate" >/dev/null 2>&1 && is_ok_python "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    echo "dev-install: need Python >= 3.10 (set PYTHON=/path/to/python3.x)" >&2
    exit 1
}

if [[ ! -x "$VENV/bin/python" ]] || ! is_ok_python "$VENV/bin/python"; then
    rm -rf "$VENV"
    "$(pick_python)" -m venv "$VENV"
fi
PY="$VENV/bin/python"

"$PY" -m pip install --quiet --upgrade pip 'setuptools>=69' wheel
spec="$ROOT"
[[ -n "$EXTRAS" ]] && spec="$ROOT[$EXTRAS]"
"$PY" -m pip install --quiet --editable "$spec"

# Make the checkout's twisted/plugins/ visible to Twisted's plugin scan.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
DROPIN_DIR="$VENV/tenantgw-dropin"
mkdir -p "$DROPIN_DIR"
ln -sfn "$ROOT/twisted" "$DROPIN_DIR/twisted"
echo "$DROPIN_DIR" > "$SITE/tenantgw-dropin.pth"

# Refresh the dropin cache and check that twistd sees the plugin.
"$PY" -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
if ! plugin_listed "$VENV"; then
    echo "dev-install: twistd --help does not list tenantgw" >&2
    exit 1
fi
echo "dev-install: tenantgw installed in $VENV (twistd plugin: ok)"

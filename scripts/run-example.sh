#!/usr/bin/env bash
# Run tenantgw locally on the example tenants and show proxied requests.
#
#   bash scripts/run-example.sh           # keeps running until Ctrl-C (on a terminal)
#   bash scripts/run-example.sh --once    # demo requests, then stop (default without a TTY)
#
# Idempotent: (re)uses .venv (development install, scripts/dev-install.sh),
# stops whatever a previous run of this script left running, then starts
#   - the example backend: python -m http.server serving examples/backend/ on
#     127.0.0.1:8081 (the address examples/tenants/*.yaml's EndpointSlices name);
#   - twistd -n tenantgw --source dir:examples/tenants, all listeners on 127.0.0.1.
# Logs and pid files go to .run/.
#
# Environment: HTTP_PORT (8080), HTTPS_PORT (8443), ADMIN_PORT (9090),
# BACKEND_PORT (8081: must match examples/tenants), BASE_DOMAIN (example.test).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

HTTP_PORT="${HTTP_PORT:-8080}"
HTTPS_PORT="${HTTPS_PORT:-8443}"
ADMIN_PORT="${ADMIN_PORT:-9090}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
BASE_DOMAIN="${BASE_DOMAIN:-example.test}"
VENV="$ROOT/.venv"
RUN="$ROOT/.run"

once=false
[[ "${1:-}" == "--once" || ! -t 0 ]] && once=true

log() { printf '==> %s\n' "$*" >&2; }

if ! command -v curl >/dev/null 2>&1; then
    log "curl is needed (Debian: apt-get install curl)"
    exit 1
fi

# --- install ---------------------------------------------------------------
EXTRAS="" bash "$ROOT/scripts/dev-install.sh" "$VENV"

# --- stop a previous run ---------------------------------------------------
mkdir -p "$RUN"
stop_pidfile() {
    local pidfile="$1" pid cmdline
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    # The command line is read into a variable, then matched: `tr | grep -q`
    # under pipefail fails whenever grep exits before tr's last write.
    cmdline=""
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        cmdline="$( (tr '\0' ' ' <"/proc/$pid/cmdline") 2>/dev/null || true)"
    fi
    if [[ "$cmdline" =~ twistd|http\.server ]]; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}
stop_pidfile "$RUN/tenantgw.pid"
stop_pidfile "$RUN/backend.pid"

cleanup() {
    stop_pidfile "$RUN/tenantgw.pid"
    stop_pidfile "$RUN/backend.pid"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- start -----------------------------------------------------------------
log "starting example backend on 127.0.0.1:$BACKEND_PORT (examples/backend/)"
"$VENV/bin/python" -m http.server "$BACKEND_PORT" --bind 127.0.0.1 \
    --directory "$ROOT/examples/backend" >"$RUN/backend.log" 2>&1 &
backend_pid=$!
echo "$backend_pid" >"$RUN/backend.pid"
for _ in $(seq 50); do
    kill -0 "$backend_pid" 2>/dev/null || break
    curl -fsS -o /dev/null "http://127.0.0.1:$BACKEND_PORT/" 2>/dev/null && break
    sleep 0.1
done
if ! kill -0 "$backend_pid" 2>/dev/null; then
    log "example backend failed to start (port $BACKEND_PORT busy?); its log:"
    cat "$RUN/backend.log" >&2 || true
    exit 1
fi

log "starting tenantgw: http 127.0.0.1:$HTTP_PORT, admin 127.0.0.1:$ADMIN_PORT (log: .run/tenantgw.log)"
"$VENV/bin/twistd" --pidfile= --logfile="$RUN/tenantgw.log" -n tenantgw \
    --source "dir:$ROOT/examples/tenants" \
    --http "tcp:$HTTP_PORT:interface=127.0.0.1" \
    --https "tcp:$HTTPS_PORT:interface=127.0.0.1" \
    --admin "tcp:$ADMIN_PORT:interface=127.0.0.1" \
    --base-domain "$BASE_DOMAIN" &
gw_pid=$!
echo "$gw_pid" >"$RUN/tenantgw.pid"

ready=false
for _ in $(seq 150); do
    if ! kill -0 "$gw_pid" 2>/dev/null; then
        break
    fi
    if curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null; then
        ready=true
        break
    fi
    sleep 0.2
done
if ! $ready; then
    log "tenantgw did not become ready; its log:"
    cat "$RUN/tenantgw.log" >&2 || true
    exit 1
fi

# --- demo ------------------------------------------------------------------
show() {
    printf '\n$'
    printf ' %q' "$@"
    printf '\n'
    "$@" || true
}
resolve=(--resolve "shop.example.com:$HTTP_PORT:127.0.0.1" --resolve "blog.$BASE_DOMAIN:$HTTP_PORT:127.0.0.1"
    --resolve "docs.apps.example.test:$HTTP_PORT:127.0.0.1")
show curl -sS -i "${resolve[@]}" "http://shop.example.com:$HTTP_PORT/"
show curl -sS -i "${resolve[@]}" "http://blog.$BASE_DOMAIN:$HTTP_PORT/"
# An Ingress kept from ingress-nginx (examples/tenants/blog.yaml): /legacy/ is rewritten to /.
show curl -sS -i "${resolve[@]}" "http://blog.$BASE_DOMAIN:$HTTP_PORT/legacy/"
# Gateway API: an HTTPRoute (examples/tenants/docs-gateway-api.yaml) strips /v1.
show curl -sS -i "${resolve[@]}" "http://docs.apps.example.test:$HTTP_PORT/v1/"
show curl -sS -i -H "Host: unknown.example.org" "http://127.0.0.1:$HTTP_PORT/"
printf '\nAdmin: http://127.0.0.1:%s/ (dashboard), /api/tenants, /metrics, /readyz, /healthz\n' "$ADMIN_PORT"

if $once; then
    exit 0
fi
printf 'tenantgw is running; try:\n  curl %s http://shop.example.com:%s/\nCtrl-C stops it.\n' \
    "--resolve shop.example.com:$HTTP_PORT:127.0.0.1" "$HTTP_PORT"
wait "$gw_pid"

"""
An oracle for the Ingress corpus: the corpus's Ingresses rendered into an
nginx.conf the way ingress-nginx's controller and template render them, and
the real nginx binary run on it, so the same probes can be sent to nginx and
to tenantgw and the answers compared.

Written from ingress-nginx's rendering rules (controller and ``nginx.tmpl``),
not from tenantgw's translator, so that a mistake in the translator cannot
hide itself in the oracle:

- one ``server`` per host (a wildcard host as the controller's regular
  expression matching one label), and a catch-all default server answering
  404;
- Ingresses in creation order; the first Ingress defining a host and path
  keeps it; a host's root location ``/`` is the first Ingress's
  ``defaultBackend`` if it has one, else the default backend's 404;
- ``Exact`` is ``location = /p``; ``Prefix`` ``/p`` becomes ``location /p/``
  plus ``location = /p``; ``ImplementationSpecific`` is nginx's plain
  ``location /p`` (a character prefix);
- when any location of a server has ``use-regex`` or a ``rewrite-target``,
  every location of that server becomes ``location ~* "^<path>"``, longest
  path first, and ``rewrite-target`` is ``rewrite "(?i)<path>" <target>
  break``;
- canaries (Lua in ingress-nginx) become ``map``s on ``$http_<header>`` and
  ``$cookie_<name>`` choosing the upstream in Lua's order: header
  (``always``/``never``, or the value, or the pattern), then cookie, then
  weight; only weights of 0 or the whole total are deterministic, others are
  refused (L{NotRenderable});
- CORS as the template's ``if ($cors ...)`` blocks, with ``add_header``
  where ingress-nginx uses headers-more's ``more_set_headers`` (not in
  Debian's nginx);
- ``force-ssl-redirect`` / ``ssl-redirect`` (Lua in ingress-nginx) as
  ``return 308 https://$host$request_uri``.

Only the ``nginx.ingress.kubernetes.io/`` prefix is read, as ingress-nginx
reads it.  Anything the renderer cannot reproduce raises L{NotRenderable}
with the reason.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from secrets import token_hex
from typing import Any

from attrs import define, field

PREFIX = "nginx.ingress.kubernetes.io/"
GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")

CORS_METHODS = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
CORS_HEADERS = (
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
    "Content-Type,Range,Authorization"
)

# Annotations the renderer reproduces; any other one present raises NotRenderable.
RENDERED = frozenset(
    {
        "rewrite-target",
        "use-regex",
        "ssl-redirect",
        "force-ssl-redirect",
        "proxy-body-size",
        "proxy-connect-timeout",
        "proxy-read-timeout",
        "proxy-send-timeout",
        "proxy-buffering",
        "limit-rps",
        "limit-burst-multiplier",
        "limit-connections",
        "whitelist-source-range",
        "denylist-source-range",
        "auth-type",
        "auth-secret",
        "auth-secret-type",
        "auth-realm",
        "canary",
        "canary-weight",
        "canary-weight-total",
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-header-pattern",
        "canary-by-cookie",
        "backend-protocol",
        "enable-cors",
        "cors-allow-origin",
        "cors-allow-methods",
        "cors-allow-headers",
        "cors-expose-headers",
        "cors-allow-credentials",
        "cors-max-age",
        "app-root",
        "permanent-redirect",
        "permanent-redirect-code",
        "temporal-redirect",
        "upstream-vhost",
    }
)


class NotRenderable(Exception):
    """The Ingresses use something plain nginx cannot reproduce (the reason)."""


def go_bool(text: str, default: bool) -> bool:
    """strconv.ParseBool, falling back to the default as ingress-nginx does."""
    if text in GO_TRUE:
        return True
    if text in GO_FALSE:
        return False
    return default


def go_quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in text)


def nginx_string(text: str) -> str:
    if any(c in text for c in "'\\\r\n\0;{}"):
        raise NotRenderable(f"value {text!r} cannot be written into nginx.conf safely")
    return "'" + text + "'"


@define
class Canary:
    service: str
    annotations: dict[str, str]


@define
class Location:
    path: str
    path_type: str  # Exact | Prefix | ImplementationSpecific
    service: str | None  # None: the default backend (404)
    annotations: dict[str, str]
    default_root: bool = False
    canary: Canary | None = None


@define
class Server:
    host: str
    tls: bool = False
    locations: list[Location] = field(factory=list)


def _annotations(ingress: Mapping[str, Any]) -> dict[str, str]:
    raw = (ingress.get("metadata") or {}).get("annotations") or {}
    found = {k[len(PREFIX) :]: str(v) for k, v in raw.items() if k.startswith(PREFIX)}
    unknown = sorted(set(found) - RENDERED)
    if unknown:
        raise NotRenderable(f"annotations not reproduced: {', '.join(unknown)}")
    return found


def _service(backend: Mapping[str, Any] | None) -> str:
    service = (backend or {}).get("service") or {}
    name = service.get("name")
    if not isinstance(name, str):
        raise NotRenderable("only Service backends are reproduced")
    return name


def _order(ingress: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = ingress.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def _is_canary(annotations: Mapping[str, str]) -> bool:
    return go_bool(annotations.get("canary", ""), False)


def build_servers(
    objects: Sequence[Mapping[str, Any]], ingress_class: str = "tenantgw"
) -> list[Server]:
    """The controller's model: servers with their locations, canaries merged."""
    ingresses = sorted(
        (
            o
            for o in objects
            if o.get("kind") == "Ingress"
            and (o.get("spec") or {}).get("ingressClassName") == ingress_class
        ),
        key=_order,
    )
    servers: dict[str, Server] = {}
    primaries = [(i, _annotations(i)) for i in ingresses]
    for ingress, found in primaries:
        if _is_canary(found):
            continue
        spec = ingress.get("spec") or {}
        tls_hosts = {h for entry in spec.get("tls") or () for h in entry.get("hosts") or ()}
        for rule in spec.get("rules") or ():
            host = rule.get("host") or "_"
            server = servers.get(host)
            if server is None:
                server = servers[host] = Server(host)
                root_service = None
                root_annotations: dict[str, str] = {}
                if spec.get("defaultBackend"):
                    root_service = _service(spec["defaultBackend"])
                    # ingress-nginx applies the Ingress's annotations to this
                    # root location, except its redirects and rewrites.
                    root_annotations = {
                        k: v
                        for k, v in found.items()
                        if k
                        not in (
                            "rewrite-target",
                            "use-regex",
                            "app-root",
                            "permanent-redirect",
                            "temporal-redirect",
                            "ssl-redirect",
                            "force-ssl-redirect",
                        )
                    }
                server.locations.append(
                    Location("/", "Prefix", root_service, root_annotations, default_root=True)
                )
            if host in tls_hosts:
                server.tls = True
            for raw in (rule.get("http") or {}).get("paths") or ():
                path = raw.get("path") or "/"
                path_type = raw.get("pathType") or "ImplementationSpecific"
                existing = [
                    loc
                    for loc in server.locations
                    if loc.path == path and (loc.path_type == path_type or loc.default_root)
                ]
                if existing and not existing[0].default_root:
                    continue  # the oldest Ingress keeps the path
                location = Location(path, path_type, _service(raw.get("backend")), found)
                if existing:
                    server.locations.remove(existing[0])
                server.locations.append(location)
    for ingress, found in primaries:
        if not _is_canary(found):
            continue
        for rule in (ingress.get("spec") or {}).get("rules") or ():
            server = servers.get(rule.get("host") or "_")
            if server is None:
                continue  # a canary without a primary is dropped
            for raw in (rule.get("http") or {}).get("paths") or ():
                path = raw.get("path") or "/"
                path_type = raw.get("pathType") or "ImplementationSpecific"
                for loc in server.locations:
                    if loc.path == path and loc.path_type == path_type and loc.canary is None:
                        loc.canary = Canary(_service(raw.get("backend")), found)
    for server in servers.values():
        server.locations = _normalise(server.locations)
    return [servers[h] for h in sorted(servers)]


def _needs_regex(location: Location) -> bool:
    a = location.annotations
    target = a.get("rewrite-target", "")
    return bool(target and target != location.path) or go_bool(a.get("use-regex", ""), False)


def _normalise(locations: list[Location]) -> list[Location]:
    """updateServerLocations, then the longest-path-first order."""
    exact = {loc.path for loc in locations if loc.path_type == "Exact"}
    out: list[Location] = []
    for loc in locations:
        if loc.path == "/" or loc.path_type != "Prefix" or _needs_regex(loc):
            out.append(loc)
            continue
        twin = Location(
            loc.path,
            "Exact",
            loc.service,
            loc.annotations,
            canary=loc.canary,
        )
        if not loc.path.endswith("/"):
            loc.path += "/"
        out.append(loc)
        if twin.path not in exact:
            out.append(twin)
    out.sort(key=lambda loc: loc.path, reverse=True)
    out.sort(key=lambda loc: len(loc.path), reverse=True)
    return out


@define
class _Http:
    """What the http{} block collects while the servers are rendered."""

    directory: str
    secrets: Mapping[str, Mapping[str, Any]]
    lines: list[str] = field(factory=list)
    count: int = 0

    def next_id(self) -> int:
        self.count += 1
        return self.count


def _upstream(service: str) -> str:
    return "up_" + service.replace("-", "_")


def _canary_upstream(http: _Http, location: Location) -> str:
    """The variable (with its maps) choosing the upstream, in ingress-nginx's Lua order."""
    assert location.canary is not None and location.service is not None
    a = location.canary.annotations
    n = http.next_id()
    keys = []
    header = a.get("canary-by-header", "").strip()
    if header:
        var = "$http_" + header.lower().replace("-", "_")
        http.lines.append(f"map {var} $canary{n}_h {{")
        http.lines.append('    default "";')
        value = a.get("canary-by-header-value", "")
        pattern = a.get("canary-by-header-pattern", "")
        if value:
            http.lines.append(f'    "~^{go_quote_meta(value)}$" "c";')
        elif pattern:
            if '"' in pattern:
                raise NotRenderable(f"canary-by-header-pattern {pattern!r}")
            http.lines.append(f'    "~{pattern}" "c";')
        else:
            http.lines.append('    "~^always$" "c";')
            http.lines.append('    "~^never$" "p";')
        http.lines.append("}")
        keys.append(f"$canary{n}_h")
    cookie = a.get("canary-by-cookie", "").strip()
    if cookie:
        http.lines.append(f"map $cookie_{cookie} $canary{n}_c {{")
        http.lines.append('    default "";')
        # Lua compares case-sensitively; a map's plain strings would not.
        http.lines.append('    "~^always$" "c";')
        http.lines.append('    "~^never$" "p";')
        http.lines.append("}")
        keys.append(f"$canary{n}_c")
    try:
        weight = int(a.get("canary-weight", "0") or "0")
        total = int(a.get("canary-weight-total", "100") or "100")
    except ValueError:
        raise NotRenderable("canary weight is not a number") from None
    if weight <= 0:
        by_weight = _upstream(location.service)
    elif weight >= total:
        by_weight = _upstream(location.canary.service)
    else:
        raise NotRenderable(f"canary-weight {weight} of {total} is random (Lua math.random)")
    if not keys:
        return by_weight
    http.lines.append(f'map "{"".join(keys)}" $canary{n} {{')
    http.lines.append(f"    default {by_weight};")
    http.lines.append(f'    "~^c" {_upstream(location.canary.service)};')
    http.lines.append(f'    "~^p" {_upstream(location.service)};')
    http.lines.append("}")
    return f"$canary{n}"


def _htpasswd(http: _Http, location: Location) -> str:
    name = location.annotations.get("auth-secret", "")
    namespace = "shop"
    if "/" in name:
        namespace, name = name.split("/", 1)
    secret = http.secrets.get(f"{namespace}/{name}")
    if secret is None:
        raise NotRenderable(f"auth-secret {name!r} not found")
    text = (secret.get("stringData") or {}).get("auth")
    if text is None:
        encoded = (secret.get("data") or {}).get("auth")
        if encoded is None:
            raise NotRenderable("auth-secret without an 'auth' key")
        text = base64.b64decode(encoded).decode()
    path = os.path.join(http.directory, f"htpasswd-{http.next_id()}")
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n")
    return path


def _cors(location: Location) -> list[str]:
    a = location.annotations
    origins = [o.strip() for o in a.get("cors-allow-origin", "*").split(",") if o.strip()]
    methods = a.get("cors-allow-methods", CORS_METHODS)
    headers = a.get("cors-allow-headers", CORS_HEADERS)
    expose = a.get("cors-expose-headers", "")
    credentials = go_bool(a.get("cors-allow-credentials", "true"), True)
    max_age = a.get("cors-max-age", "1728000")
    lines = ['set $cors "";', "set $cors_origin $http_origin;"]
    if origins == ["*"]:
        lines += ['set $cors_origin "*";', 'set $cors "true";']
    else:
        parts = []
        for origin in origins:
            quoted = go_quote_meta(origin).replace("\\*", "[A-Za-z0-9\\-]+", 1)
            parts.append(f"({quoted})")
        lines.append(f'if ($http_origin ~* "({"|".join(parts)})$") {{ set $cors "true"; }}')
    lines.append("if ($request_method = 'OPTIONS') { set $cors \"${cors}options\"; }")
    common = [
        "add_header Access-Control-Allow-Origin $cors_origin always;",
        f"add_header Access-Control-Allow-Methods {nginx_string(methods)} always;",
        f"add_header Access-Control-Allow-Headers {nginx_string(headers)} always;",
        f"add_header Access-Control-Max-Age {nginx_string(max_age)} always;",
    ]
    if credentials:
        common.append("add_header Access-Control-Allow-Credentials 'true' always;")
    if expose:
        common.append(f"add_header Access-Control-Expose-Headers {nginx_string(expose)} always;")
    lines.append('if ($cors = "true") {')
    lines += ["    " + c for c in common]
    lines.append("}")
    lines.append('if ($cors = "trueoptions") {')
    lines += ["    " + c for c in common]
    lines.append("    return 204;")
    lines.append("}")
    return lines


def _location(http: _Http, server: Server, location: Location, regex: bool) -> list[str]:
    a = location.annotations
    if location.path_type == "Exact" and not regex:
        head = f"location = {location.path}"
    elif regex:
        if '"' in location.path or "{" in location.path:
            raise NotRenderable(f"path {location.path!r}")
        head = f'location ~* "^{location.path}"'
    else:
        head = f"location {location.path}"
    body: list[str] = ["port_in_redirect off;"]
    if location.service is None:
        return [head + " {", "    return 404;", "}"]
    # Access phase (allow/deny, auth) runs after the rewrite phase whatever the order.
    for cidr in _list(a.get("denylist-source-range", "")):
        body.append(f"deny {cidr};")
    allowed = _list(a.get("whitelist-source-range", ""))
    for cidr in allowed:
        body.append(f"allow {cidr};")
    if allowed:
        body.append("deny all;")
    if a.get("auth-type", "").strip() == "basic":
        realm = a.get("auth-realm", "Authentication Required")
        if '"' in realm:
            raise NotRenderable("auth-realm with a quote")
        body.append(f'auth_basic "{realm}";')
        body.append(f"auth_basic_user_file {_htpasswd(http, location)};")
        body.append('proxy_set_header Authorization "";')
    rps = a.get("limit-rps", "")
    if rps:
        n = http.next_id()
        burst = int(rps) * int(a.get("limit-burst-multiplier", "5"))
        http.lines.append(f"limit_req_zone $binary_remote_addr zone=rps{n}:1m rate={int(rps)}r/s;")
        body.append(f"limit_req zone=rps{n} burst={burst} nodelay;")
    connections = a.get("limit-connections", "")
    if connections:
        n = http.next_id()
        http.lines.append(f"limit_conn_zone $binary_remote_addr zone=conn{n}:1m;")
        body.append(f"limit_conn conn{n} {int(connections)};")
    # Rewrite phase, in the template's order: CORS, the redirect, then the
    # rewrite; the HTTPS redirect is Lua at the end of the rewrite phase.
    if go_bool(a.get("enable-cors", ""), False):
        body += _cors(location)
    redirect = None
    if a.get("permanent-redirect"):
        code = a.get("permanent-redirect-code", "301")
        redirect = f"return {int(code)} {a['permanent-redirect']};"
    elif a.get("temporal-redirect"):
        redirect = f"return 302 {a['temporal-redirect']};"
    if redirect:
        body.append(redirect)
    if go_bool(a.get("force-ssl-redirect", ""), False) or (
        server.tls and go_bool(a.get("ssl-redirect", "true"), True)
    ):
        body.append("if ($scheme = http) { return 308 https://$host$request_uri; }")
    size = a.get("proxy-body-size", "1m")
    body.append(f"client_max_body_size {size};")
    vhost = a.get("upstream-vhost")
    body.append(f"proxy_set_header Host {nginx_string(vhost) if vhost else '$http_host'};")
    body += [
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Request-ID $request_id;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Host $http_host;",
        "proxy_set_header X-Forwarded-Port $server_port;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Scheme $scheme;",
        "proxy_set_header X-Original-Forwarded-For $http_x_forwarded_for;",
        'proxy_set_header Proxy "";',
        f"proxy_connect_timeout {_seconds(a.get('proxy-connect-timeout', '5'))}s;",
        f"proxy_send_timeout {_seconds(a.get('proxy-send-timeout', '60'))}s;",
        f"proxy_read_timeout {_seconds(a.get('proxy-read-timeout', '60'))}s;",
        f"proxy_buffering {'on' if a.get('proxy-buffering') == 'on' else 'off'};",
        "proxy_http_version 1.1;",
    ]
    protocol = a.get("backend-protocol", "HTTP").strip().upper()
    if protocol != "HTTP":
        raise NotRenderable(f"backend-protocol {protocol}")
    target = a.get("rewrite-target", "")
    if target and target != location.path:
        body.append(f'rewrite "(?i){location.path}" {target} break;')
    upstream = (
        _canary_upstream(http, location)
        if location.canary is not None
        else _upstream(location.service)
    )
    body.append(f"proxy_pass http://{upstream};")
    return [head + " {", *("    " + line for line in body), "}"]


def _seconds(text: str) -> int:
    stripped = text.strip()
    if not stripped.isdigit():
        raise NotRenderable(f"timeout {text!r}")
    return int(stripped)


def _list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def server_name(host: str) -> str:
    """buildServerName: a wildcard host matches exactly one more label."""
    if not host.startswith("*."):
        return host
    labels = host[2:].split(".")
    return '"~^(?<subdomain>[\\w-]+)\\.' + "\\.".join(labels) + '$"'


def render(
    objects: Sequence[Mapping[str, Any]],
    services: Mapping[str, int],
    port: int,
    directory: str,
    ready_token: str = "",
) -> str:
    """
    nginx.conf for the Ingresses among C{objects}: listening on
    127.0.0.1:C{port}, each Service name in C{services} proxied to that
    local port, every file nginx writes inside C{directory}.  With a
    C{ready_token}, the default server answers it on L{READY_PATH}: a port
    that accepts connections may be another process's, taken meanwhile.
    """
    secrets = {
        f"{(o.get('metadata') or {}).get('namespace')}/{(o.get('metadata') or {}).get('name')}": o
        for o in objects
        if o.get("kind") == "Secret"
    }
    http = _Http(directory, secrets)
    servers_text: list[str] = []
    for server in build_servers(objects):
        if server.host == "_":
            raise NotRenderable("a rule without host (the default server)")
        regex = any(_needs_regex(loc) for loc in server.locations)
        block = [
            "server {",
            f"    listen 127.0.0.1:{port};",
            f"    server_name {server_name(server.host)};",
        ]
        for location in server.locations:
            root = location.annotations.get("app-root")
            if root and not location.default_root:
                block.append(f"    if ($uri = /) {{ return 302 $scheme://$http_host{root}; }}")
        for location in server.locations:
            block += ["    " + line for line in _location(http, server, location, regex)]
        block.append("}")
        servers_text += block
    temp = os.path.join(directory, "tmp")
    lines = [
        "daemon off;",
        "master_process off;",
        "worker_processes 1;",
        f"pid {os.path.join(directory, 'nginx.pid')};",
        f"error_log {os.path.join(directory, 'error.log')} info;",
        "events { worker_connections 256; }",
        "http {",
        "    access_log off;",
        "    server_tokens off;",
        f"    client_body_temp_path {temp}/body;",
        f"    proxy_temp_path {temp}/proxy;",
        f"    fastcgi_temp_path {temp}/fastcgi;",
        f"    uwsgi_temp_path {temp}/uwsgi;",
        f"    scgi_temp_path {temp}/scgi;",
        "    server_names_hash_bucket_size 128;",
        "    map $http_upgrade $connection_upgrade { default upgrade; '' close; }",
    ]
    for name, local_port in sorted(services.items()):
        lines += [
            f"    upstream {_upstream(name)} {{",
            f"        server 127.0.0.1:{local_port} max_fails=0;",
            "    }",
        ]
    lines += ["    " + line for line in http.lines]
    lines += [
        "    server {",
        f"        listen 127.0.0.1:{port} default_server;",
        "        server_name _;",
        "        location / { return 404; }",
        *(
            [f"        location = {READY_PATH} {{ return 200 '{ready_token}'; }}"]
            if ready_token
            else []
        ),
        "    }",
    ]
    lines += ["    " + line for line in servers_text]
    lines.append("}")
    return "\n".join(lines) + "\n"


def nginx_binary() -> str:
    """Debian's nginx (in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise AssertionError("the nginx oracle needs nginx (Debian package nginx) installed")
    return found


READY_PATH = "/.tenantgw-oracle-ready"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Nginx:
    """
    The real nginx on a rendered configuration, as a non-root process (as
    C{nobody} when the tests run as root), on a free port, every file in a
    temporary directory.
    """

    def __init__(self, objects: Sequence[Mapping[str, Any]], services: Mapping[str, int]):
        self.directory = tempfile.mkdtemp(prefix="tgw-nginx-")
        os.chmod(self.directory, 0o755)
        self.process: subprocess.Popen[bytes] | None = None
        for _attempt in range(5):
            self.port = _free_port()
            self.token = token_hex(8)
            self.config = render(objects, services, self.port, self.directory, self.token)
            if self._start():
                return
        self.stop()
        raise AssertionError(f"nginx did not start: {self.error_log()}")

    def _start(self) -> bool:
        os.makedirs(os.path.join(self.directory, "tmp"), exist_ok=True)
        path = os.path.join(self.directory, "nginx.conf")
        with open(path, "w") as f:
            f.write(self.config)
        user: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for root, dirs, files in os.walk(self.directory):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.chown(name, nobody.pw_uid, nobody.pw_gid)
            user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", self.directory, "-c", path, "-e", self.error_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **user,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self._answers_its_token():
                return True
            time.sleep(0.01)
        self.stop_process()
        return False

    def _answers_its_token(self) -> bool:
        """This nginx, not whatever else took the port, is serving."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(f"GET {READY_PATH} HTTP/1.0\r\nHost: ready\r\n\r\n".encode())
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
        except OSError:
            return False
        return answer.startswith(b"HTTP/1.1 200") and answer.endswith(self.token.encode())

    @property
    def error_path(self) -> str:
        return os.path.join(self.directory, "error.log")

    def error_log(self) -> str:
        try:
            with open(self.error_path) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no error log)"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.directory, ignore_errors=True)

    def stop_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

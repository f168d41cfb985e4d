"""
Response caching for routes that ask for it (``cache:`` in tenant.yaml).

A shared cache is where one client's response can leak to another, so it
errs towards not storing: only GET, only 200, never a request carrying
Authorization, never a response marked private, no-store or no-cache, never
one that sets a cookie or varies on everything.  Each tenant has its own
cache with its own byte budget (least recently used entries go first), and
entries are keyed by route, host and target, so no response is ever served
across tenants or routes.  Vary is honoured: the named request headers are
part of the key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

from tenantgw.dataplane.upstream import ResponseHeaders

DEFAULT_TENANT_BUDGET = 32 * 1024 * 1024

BaseKey = tuple[str, bytes, bytes]  # route, host, target


@frozen
class CachedResponse:
    code: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    stored_at: float
    expires_at: float

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(n) + len(v) for n, v in self.headers) + 64


def _cache_control(values: Iterable[bytes]) -> dict[bytes, bytes]:
    """Cache-Control directives, lower-cased, with their arguments (or b"")."""
    directives: dict[bytes, bytes] = {}
    for value in values:
        for part in value.split(b","):
            name, _, argument = part.strip().partition(b"=")
            directives[name.lower()] = argument.strip(b'"')
    return directives


def request_may_use_cache(method: bytes, request_headers: object) -> bool:
    get = request_headers.getRawHeaders  # type: ignore[attr-defined]
    if method != b"GET" or get(b"authorization") is not None:
        return False
    directives = _cache_control(get(b"cache-control", []))
    return not ({b"no-store", b"no-cache"} & directives.keys())


def freshness(headers: ResponseHeaders, route_max_age: int) -> float | None:
    """Seconds the response may be served from cache, or None when it must not be stored."""
    control = _cache_control(v for n, v in headers if n == b"cache-control")
    if {b"no-store", b"private", b"no-cache"} & control.keys():
        return None
    for name, value in headers:
        if name == b"set-cookie" or (name == b"vary" and value.strip() == b"*"):
            return None
    for directive in (b"s-maxage", b"max-age"):
        if directive in control:
            try:
                seconds = int(control[directive])
            except ValueError:
                return None
            return float(min(seconds, route_max_age)) if seconds > 0 else None
    return float(route_max_age)


class TenantCache:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self.entries: OrderedDict[tuple[BaseKey, tuple[bytes, ...]], CachedResponse] = OrderedDict()
        self.vary: dict[BaseKey, tuple[bytes, ...]] = {}

    def _key(self, base: BaseKey, request_headers: object) -> tuple[BaseKey, tuple[bytes, ...]]:
        names = self.vary.get(base, ())
        get = request_headers.getRawHeaders  # type: ignore[attr-defined]
        return base, tuple(b",".join(get(name, [])) for name in names)

    def get(self, base: BaseKey, request_headers: object, now: float) -> CachedResponse | None:
        key = self._key(base, request_headers)
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return entry

    def put(self, base: BaseKey, request_headers: object, entry: CachedResponse) -> None:
        if entry.size > self.budget:
            return
        vary = tuple(
            name.strip().lower()
            for n, value in entry.headers
            if n == b"vary"
            for name in value.split(b",")
            if name.strip()
        )
        self.vary[base] = vary
        key = self._key(base, request_headers)
        if key in self.entries:
            self._drop(key)
        self.entries[key] = entry
        self.size += entry.size
        while self.size > self.budget:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple[BaseKey, tuple[bytes, ...]]) -> None:
        self.size -= self.entries.pop(key).size


class ResponseCache:
    """One L{TenantCache} per namespace; none is ever consulted for another."""

    def __init__(self, clock: IReactorTime, budget_per_tenant: int = DEFAULT_TENANT_BUDGET) -> None:
        self.clock = clock
        self.budget_per_tenant = budget_per_tenant
        self.tenants: dict[str, TenantCache] = {}

    def for_tenant(self, namespace: str) -> TenantCache:
        cache = self.tenants.get(namespace)
        if cache is None:
            cache = self.tenants[namespace] = TenantCache(self.budget_per_tenant)
        return cache


class CacheFill:
    """Collects one upstream response and stores it if it turns out cacheable."""

    def __init__(
        self,
        cache: TenantCache,
        base: BaseKey,
        request_headers: object,
        max_body: int,
        max_age: int,
        clock: IReactorTime,
    ) -> None:
        self.cache = cache
        self.base = base
        self.request_headers = request_headers
        self.max_body = max_body
        self.max_age = max_age
        self.clock = clock
        self.code = 0
        self.reason = b""
        self.headers: ResponseHeaders = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.ttl: float | None = None

    def head(self, code: int, reason: bytes, headers: ResponseHeaders) -> None:
        self.ttl = freshness(headers, self.max_age) if code == 200 else None
        self.code, self.reason = code, reason
        self.headers = [(n, v) for n, v in headers if n not in (b"x-request-id", b"x-cache")]

    def data(self, data: bytes) -> None:
        if self.ttl is None:
            return
        self.size += len(data)
        if self.size > self.max_body:
            self.ttl = None
            self.chunks = []
            return
        self.chunks.append(data)

    def finished(self) -> None:
        if self.ttl is None:
            return
        now = self.clock.seconds()
        self.cache.put(
            self.base,
            self.request_headers,
            CachedResponse(
                code=self.code,
                reason=self.reason,
                headers=tuple(self.headers),
                body=b"".join(self.chunks),
                stored_at=now,
                expires_at=now + self.ttl,
            ),
        )

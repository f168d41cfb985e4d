"""
CORS answered at the gateway (Gateway API HTTPCORSFilter; ingress-nginx
``enable-cors``): a preflight never reaches the backend, and an actual
request's response gets the headers the browser needs.

Pure functions of the request's headers, so the rules are tested without a
socket.  An origin that is not allowed gets no CORS headers at all (the
browser then refuses), never an error the page could tell apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

ResponseHeaders = list[tuple[bytes, bytes]]


@frozen
class CorsPolicy:
    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    expose_headers: tuple[str, ...]
    allow_credentials: bool
    max_age_seconds: int

    @classmethod
    def of(cls, cors: object) -> CorsPolicy:
        return cls(
            tuple(getattr(cors, "allow_origins", ())),
            tuple(getattr(cors, "allow_methods", ())),
            tuple(getattr(cors, "allow_headers", ())),
            tuple(getattr(cors, "expose_headers", ())),
            bool(getattr(cors, "allow_credentials", False)),
            int(getattr(cors, "max_age_seconds", 5)),
        )

    def origin_allowed(self, origin: str) -> bool:
        lowered = origin.lower()
        for allowed in self.allow_origins:
            if allowed == "*" or allowed == lowered:
                return True
            scheme, _, host = allowed.partition("://")
            if host.startswith("*."):
                their_scheme, _, their_host = lowered.partition("://")
                suffix = host[1:]
                if (
                    their_scheme == scheme
                    and their_host.endswith(suffix)
                    and len(their_host) > len(suffix)
                ):
                    return True
        return False

    def _origin_header(self, origin: bytes) -> bytes:
        # "*" cannot carry credentials: the browser needs the origin itself.
        if "*" in self.allow_origins and not self.allow_credentials:
            return b"*"
        return origin

    def _for_origin(self, origin: bytes) -> ResponseHeaders | None:
        """What every answer to an allowed origin carries; None for any other origin."""
        try:
            allowed = self.origin_allowed(origin.decode("ascii"))
        except UnicodeDecodeError:
            allowed = False
        if not allowed:
            return None
        headers: ResponseHeaders = [
            (b"access-control-allow-origin", self._origin_header(origin)),
            (b"vary", b"Origin"),
        ]
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def preflight_headers(
        self, origin: bytes, method: bytes, requested_headers: Sequence[bytes]
    ) -> ResponseHeaders:
        """The headers of the gateway's answer to a preflight (only Vary: not allowed)."""
        headers = self._for_origin(origin)
        if headers is None:
            return [(b"vary", b"Origin")]
        if self.allow_methods:
            if "*" in self.allow_methods:
                methods = method if self.allow_credentials else b"*"
            else:
                methods = ", ".join(self.allow_methods).encode("ascii")
            headers.append((b"access-control-allow-methods", methods))
        if self.allow_headers:
            if "*" in self.allow_headers:
                allowed = b", ".join(requested_headers) if self.allow_credentials else b"*"
            else:
                allowed = ", ".join(self.allow_headers).encode("ascii")
            if allowed:
                headers.append((b"access-control-allow-headers", allowed))
        headers.append((b"access-control-max-age", b"%d" % self.max_age_seconds))
        # Read by browsers only on actual responses, but the Gateway API
        # conformance suite expects it here too, and it costs nothing.
        self._add_expose(headers)
        return headers

    def _add_expose(self, headers: ResponseHeaders) -> None:
        if self.expose_headers:
            headers.append(
                (b"access-control-expose-headers", ", ".join(self.expose_headers).encode("ascii"))
            )

    def response_headers(self, origin: bytes) -> ResponseHeaders:
        """Headers added to a forwarded request's response."""
        headers = self._for_origin(origin)
        if headers is None:
            return [(b"vary", b"Origin")]
        self._add_expose(headers)
        return headers


def is_preflight(method: bytes, origin: bytes | None, requested_method: bytes | None) -> bool:
    return method == b"OPTIONS" and origin is not None and requested_method is not None

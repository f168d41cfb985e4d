"""
Route matching with Gateway API HTTPRoute semantics (contract section 5).

Routes arrive in precedence order (L{tenantgw.compile.precedence}), so
matching a request is a first-hit scan: the first route whose conditions
all hold is the most specific one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl

from attrs import frozen

from tenantgw.config.model import PATH_EXACT, RouteMatch

T = TypeVar("T")

# From a lower-case header name to its values, or None when absent.
HeaderLookup = Callable[[bytes], Sequence[bytes] | None]


@frozen
class Matcher:
    """
    One route's conditions, pre-digested into bytes so that the hot path
    compares bytes to bytes without decoding anything.
    """

    exact: bool
    path: bytes  # for prefixes, without trailing slash ("/" becomes "")
    methods: frozenset[bytes]
    headers: tuple[tuple[bytes, bytes], ...]
    query_params: tuple[tuple[str, str], ...]

    @classmethod
    def for_route(cls, match: RouteMatch) -> Matcher:
        path = match.path.encode("ascii")
        if match.path_type != PATH_EXACT:
            path = path.rstrip(b"/")
        return cls(
            exact=match.path_type == PATH_EXACT,
            path=path,
            methods=frozenset(m.encode("ascii") for m in match.methods),
            headers=tuple(
                (h.name.encode("ascii"), h.value.encode("latin-1")) for h in match.headers
            ),
            query_params=tuple((q.name, q.value) for q in match.query_params),
        )

    def matches_path(self, path: bytes) -> bool:
        if self.exact:
            return path == self.path
        prefix = self.path
        if not prefix:
            return True
        return path == prefix or (path.startswith(prefix) and path[len(prefix)] == 0x2F)  # "/"

    def matches(
        self,
        method: bytes,
        path: bytes,
        header_lookup: HeaderLookup,
        query: bytes | None,
    ) -> bool:
        if not self.matches_path(path):
            return False
        if self.methods and method not in self.methods:
            return False
        for name, value in self.headers:
            values = header_lookup(name)
            if not values or (value not in values and b", ".join(values) != value):
                return False
        if self.query_params:
            params = first_query_values(query)
            for qname, qvalue in self.query_params:
                if params.get(qname) != qvalue:
                    return False
        return True


def first_query_values(query: bytes | None) -> Mapping[str, str]:
    """As Gateway API says: when a parameter repeats, only its first value counts."""
    if not query:
        return {}
    result: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        result.setdefault(name, value)
    return result


def first_match(
    matchers: Sequence[tuple[Matcher, T]],
    method: bytes,
    path: bytes,
    header_lookup: HeaderLookup,
    query: bytes | None,
) -> T | None:
    for matcher, item in matchers:
        if matcher.matches(method, path, header_lookup, query):
            return item
    return None

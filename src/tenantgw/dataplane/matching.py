"""
Route matching with Gateway API HTTPRoute semantics (contract section 5).

Routes arrive in precedence order (L{tenantgw.compile.precedence}), so
matching a request is a first-hit scan: the first route whose conditions
all hold is the most specific one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import re2
from attrs import field, frozen

from tenantgw.config.model import PATH_EXACT, PATH_REGEX, RouteMatch
from tenantgw.dataplane.balancing import cookie_value

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
    # RE2 only (linear time whatever the tenant wrote): a regular-expression
    # path, header patterns, and cookie values to match.
    path_regex: Any | None = field(default=None, eq=False)
    header_patterns: tuple[tuple[bytes, Any], ...] = field(default=(), eq=False)
    cookies: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def for_route(cls, match: RouteMatch) -> Matcher:
        path = match.path.encode("ascii")
        regex = None
        if match.path_type == PATH_REGEX:
            # nginx "location ~*": case-insensitive, anchored at the start only.
            regex = re2.compile(b"(?i)" + path)
        elif match.path_type != PATH_EXACT:
            path = path.rstrip(b"/")
        return cls(
            exact=match.path_type == PATH_EXACT,
            path=path,
            methods=frozenset(m.encode("ascii") for m in match.methods),
            headers=tuple(
                (h.name.encode("ascii"), h.value.encode("latin-1"))
                for h in match.headers
                if not h.regex
            ),
            query_params=tuple((q.name, q.value) for q in match.query_params),
            path_regex=regex,
            header_patterns=tuple(
                (h.name.encode("ascii"), re2.compile(h.value.encode("latin-1")))
                for h in match.headers
                if h.regex
            ),
            cookies=tuple(
                (c.name.encode("ascii"), c.value.encode("latin-1")) for c in match.cookies
            ),
        )

    def matches_path(self, path: bytes) -> bool:
        if self.path_regex is not None:
            return self.path_regex.match(path) is not None
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
        for name, pattern in self.header_patterns:
            values = header_lookup(name)
            if not values or pattern.search(b", ".join(values)) is None:
                return False
        if self.cookies:
            cookie_headers = header_lookup(b"cookie")
            for name, value in self.cookies:
                if cookie_value(cookie_headers, name) != value:
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

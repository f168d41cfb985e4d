"""
Route matching with Gateway API HTTPRoute semantics (contract section 5).

Routes arrive in precedence order (L{tenantgw.compile.precedence}), so
matching a request is a first-hit scan: the first route whose conditions
all hold is the most specific one.  The conditions arrive as
L{MatchPlan}s, already bytes (L{tenantgw.compile.lowering.plan_match}).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from urllib.parse import parse_qsl

from tenantgw.dataplane.balancing import cookie_value
from tenantgw.plans.routes import MatchPlan

T = TypeVar("T")

# From a lower-case header name to its values, or None when absent.
HeaderLookup = Callable[[bytes], Sequence[bytes] | None]


def matches_path(plan: MatchPlan, path: bytes) -> bool:
    if plan.path_regex is not None:
        return plan.path_regex.match(path) is not None
    if plan.exact:
        return path == plan.path
    prefix = plan.path
    if not prefix:
        return True
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == 0x2F)  # "/"


def matches(
    plan: MatchPlan,
    method: bytes,
    path: bytes,
    header_lookup: HeaderLookup,
    query: bytes | None,
) -> bool:
    if not matches_path(plan, path):
        return False
    if plan.methods and method not in plan.methods:
        return False
    for name, value in plan.headers:
        values = header_lookup(name)
        if not values or (value not in values and b", ".join(values) != value):
            return False
    for name, pattern in plan.header_patterns:
        values = header_lookup(name)
        if not values or pattern.search(b", ".join(values)) is None:
            return False
    if plan.cookies:
        cookie_headers = header_lookup(b"cookie")
        for name, value in plan.cookies:
            if cookie_value(cookie_headers, name) != value:
                return False
    if plan.query_params:
        params = first_query_values(query)
        for qname, qvalue in plan.query_params:
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
    matchers: Sequence[tuple[MatchPlan, T]],
    method: bytes,
    path: bytes,
    header_lookup: HeaderLookup,
    query: bytes | None,
) -> T | None:
    for plan, item in matchers:
        if matches(plan, method, path, header_lookup, query):
            return item
    return None

"""
Route precedence (contract section 5), applied once per compile so that the
data plane can match by a first-hit scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tenantgw.config.model import PATH_EXACT, Route, RouteMatch

T = TypeVar("T")


def precedence_key(match: RouteMatch, declared_at: int) -> tuple[int, int, int, int, int, int, int]:
    """
    Exact path, then longest prefix (or L{RouteMatch.precedence_length}),
    then routes with a method match, then
    most header matches, then most query matches, then most cookie matches
    (Ingress canaries), then declaration order.
    """
    return (
        0 if match.path_type == PATH_EXACT else 1,
        -(len(match.path) if match.precedence_length is None else match.precedence_length),
        0 if match.methods else 1,
        -len(match.headers),
        -len(match.query_params),
        -len(match.cookies),
        declared_at,
    )


def in_precedence_order(routes: Iterable[tuple[Route, T]]) -> tuple[T, ...]:
    indexed = [(precedence_key(route.match, i), item) for i, (route, item) in enumerate(routes)]
    indexed.sort(key=lambda pair: pair[0])
    return tuple(item for _, item in indexed)

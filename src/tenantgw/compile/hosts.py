"""
Host ownership across dialects, and the route list each owned host serves.

One rule for every dialect (contract sections 3 and 10): a host belongs to
one namespace, the oldest claiming object wins (creationTimestamp, then
namespace/name), and a derived host always belongs to its namespace.
Within the owning namespace the routes of all its objects on that host
merge, ordered as Gateway API orders them: the most specific hostname
first (the host itself, then the tenant's longer wildcards above it, then
its catch-all), and within one hostname by match specificity, then by the
age of the object that declared the route, then by declaration order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from attrs import frozen

from tenantgw.compile.precedence import precedence_key
from tenantgw.config.model import RouteMatch
from tenantgw.plans.routes import RoutePlan
from tenantgw.plans.snapshot import ANY_HOST

SCHEMES = ("http", "https")


@frozen
class HostClaim:
    """One object's claim on one host (exact, C{*.suffix}, or L{ANY_HOST})."""

    age: tuple[str, ...]  # (creationTimestamp, namespace, name, ...): oldest first
    namespace: str
    host: str
    origin: str  # "ConfigMap tenant", "HTTPRoute web": for conflict messages


@frozen
class Ownership:
    owner: Mapping[str, str]  # host -> namespace
    conflicts: Mapping[str, tuple[str, ...]]  # namespace -> messages
    lost: Mapping[str, frozenset[str]]  # origin ("HTTPRoute ns/name") -> hosts it lost


def share_hosts(
    claims: Iterable[HostClaim],
    derived: Mapping[str, str],
    reserved: Mapping[str, str],
) -> Ownership:
    """
    C{derived}: host -> namespace, for serving namespaces (always theirs);
    C{reserved}: derived hosts of every selected namespace, serving or not,
    which no other namespace may take.
    """
    owner: dict[str, str] = dict(derived)
    first_claim: dict[str, HostClaim] = {}
    conflicts: dict[str, list[str]] = defaultdict(list)
    lost: dict[str, set[str]] = defaultdict(set)
    for claim in sorted(claims, key=lambda c: (c.age, c.host)):
        # A ConfigMap's claims are its hosts[] (tenantgw check maps the
        # message back to the field); other objects are named.
        prefix = "" if claim.origin.startswith("ConfigMap ") else f"{claim.origin}: "
        holder = owner.get(claim.host)
        if holder is None and reserved.get(claim.host, claim.namespace) != claim.namespace:
            conflicts[claim.namespace].append(
                f"{prefix}host {claim.host!r} is the derived host of namespace"
                f" {reserved[claim.host]!r} and is reserved for it"
            )
            lost[claim.origin].add(claim.host)
        elif holder is None:
            owner[claim.host] = claim.namespace
            first_claim[claim.host] = claim
        elif holder != claim.namespace:
            winner = first_claim.get(claim.host)
            by = f"an older {winner.origin.split(' ')[0]}" if winner else "its derived host"
            conflicts[claim.namespace].append(
                f"{prefix}host {claim.host!r} is already served by namespace {holder!r} ({by})"
            )
            lost[claim.origin].add(claim.host)
    return Ownership(
        owner,
        {ns: tuple(dict.fromkeys(messages)) for ns, messages in conflicts.items()},
        {origin: frozenset(hosts) for origin, hosts in lost.items()},
    )


@frozen
class PlacedRoute:
    """
    A route's plan with the host keys and schemes it serves, and what orders
    it among the others: its declared match, then its tie-break order.
    """

    route: RoutePlan
    match: RouteMatch
    hosts: frozenset[str]
    schemes: frozenset[str]
    order: tuple[object, ...]


def _covering_keys(key: str, keys: Sequence[str]) -> list[str]:
    """The tenant's wildcards strictly above C{key}, longest first, then its catch-all."""
    if key == ANY_HOST:
        return []
    result = [
        k
        for k in keys
        if k.startswith("*.") and k != key and key.endswith(k[1:]) and len(key) > len(k) - 1
    ]
    result.sort(key=len, reverse=True)
    if ANY_HOST in keys:
        result.append(ANY_HOST)
    return result


def _ordered(routes: Iterable[PlacedRoute]) -> list[PlacedRoute]:
    return sorted(routes, key=lambda p: (precedence_key(p.match, 0)[:-1], p.order))


def routes_by_host(
    placed: Sequence[PlacedRoute], keys: Sequence[str]
) -> dict[tuple[str, str], tuple[RoutePlan, ...]]:
    """(scheme, host key) -> the routes a request for that key tries, first match wins."""
    own: dict[tuple[str, str], list[PlacedRoute]] = {}
    for scheme in SCHEMES:
        for key in keys:
            own[(scheme, key)] = _ordered(
                p for p in placed if key in p.hosts and scheme in p.schemes
            )
    result: dict[tuple[str, str], tuple[RoutePlan, ...]] = {}
    for (scheme, key), first in own.items():
        chain = list(first)
        for above in _covering_keys(key, keys):
            chain.extend(own[(scheme, above)])
        seen: set[int] = set()
        unique = []
        for p in chain:
            if id(p.route) not in seen:
                seen.add(id(p.route))
                unique.append(p.route)
        result[(scheme, key)] = tuple(unique)
    return result

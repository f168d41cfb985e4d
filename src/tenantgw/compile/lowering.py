"""
A route's declaration (L{tenantgw.config.model.Route}) lowered into the plan
the data plane runs (L{tenantgw.plans.routes.RoutePlan}).

Lowering happens once per compile: strings become the bytes the hot path
compares, regular expressions are compiled (RE2: linear time whatever a
tenant wrote), and the choices that depend only on the declaration are
taken here, so that no request pays for them and the data plane never reads
the config model.
"""

from __future__ import annotations

import re2

from tenantgw.config.model import HeaderModifier, Route, RouteMatch
from tenantgw.plans.routes import AccessPlan, BackendPlan, HeaderEdits, MatchPlan, RoutePlan
from tenantgw.values import PATH_EXACT, PATH_REGEX


def plan_match(match: RouteMatch) -> MatchPlan:
    path = match.path.encode("ascii")
    regex = None
    if match.path_type == PATH_REGEX:
        # nginx "location ~*": case-insensitive, anchored at the start only.
        regex = re2.compile(b"(?i)" + path)
    elif match.path_type != PATH_EXACT:
        path = path.rstrip(b"/")
    return MatchPlan(
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
        cookies=tuple((c.name.encode("ascii"), c.value.encode("latin-1")) for c in match.cookies),
    )


def plan_header_edits(modifier: HeaderModifier) -> HeaderEdits | None:
    """Names lower-cased by the parser, encoded here; None when nothing is edited."""
    if modifier.is_empty():
        return None
    return HeaderEdits(
        remove=tuple(name.encode("ascii") for name in modifier.remove),
        set=tuple((n.encode("ascii"), v.encode("latin-1")) for n, v in modifier.set),
        add=tuple((n.encode("ascii"), v.encode("latin-1")) for n, v in modifier.add),
    )


def _ascii(text: str | None) -> bytes | None:
    return text.encode("ascii") if text else None


def plan_route(
    route: Route,
    backends: tuple[BackendPlan, ...],
    access: tuple[AccessPlan, ...],
    mirrors: tuple[tuple[BackendPlan, float], ...],
    source: str,
) -> RoutePlan:
    """C{backends}, C{access} and C{mirrors} are already resolved in the tenant's namespace."""
    rewrite = route.rewrite
    usable_weight = sum(b.weight for b in backends)
    refused = route.refused_backend_weight
    return RoutePlan(
        name=route.name,
        match=plan_match(route.match),
        backends=backends,
        access=access,
        source=source,
        path=route.match.path,
        path_type=route.match.path_type,
        rate=route.quota,
        mirrors=mirrors,
        balancing=route.load_balancer.policy,
        affinity_cookie=_ascii(route.load_balancer.cookie_name),
        retry_attempts=route.retries.attempts,
        attempt_timeout=route.backend_timeout_seconds or route.timeout_seconds,
        redirect=route.redirect,
        rewrite_prefix=_ascii(rewrite.replace_prefix) if rewrite else None,
        rewrite_full_path=_ascii(rewrite.full_path) if rewrite else None,
        rewrite_regex_target=_ascii(rewrite.regex_target) if rewrite else None,
        rewrite_host=_ascii(rewrite.host) if rewrite else None,
        request_edits=plan_header_edits(route.request_headers),
        response_edits=plan_header_edits(route.response_headers),
        cors=route.cors,
        refused_share=refused / (refused + usable_weight) if refused else 0.0,
        cache=route.cache,
        health_check=route.health_check,
        max_request_body_bytes=route.max_request_body_bytes,
        per_client_rate=route.per_client_rate,
        max_client_concurrent=route.max_client_concurrent,
    )

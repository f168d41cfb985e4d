"""
The operator's policy for one tenant namespace, read from Namespace
annotations (contract section 2), and the two ways it constrains a tenant:
which hosts it may claim and how high its quotas may go.

This is kept apart from the tenant's own file because the two change
independently and are trusted differently: the operator's annotations
bound what the tenant's file may ask for, never the other way round.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from attrs import evolve, frozen

from tenantgw.config import names
from tenantgw.config.model import FieldError, Quota, RateLimit

ALLOWED_HOSTS_ANNOTATION = "tenantgw.io/allowed-hosts"
MAX_REQUESTS_PER_SECOND_ANNOTATION = "tenantgw.io/max-requests-per-second"
MAX_BURST_ANNOTATION = "tenantgw.io/max-burst"
MAX_CONCURRENT_REQUESTS_ANNOTATION = "tenantgw.io/max-concurrent-requests"
MAX_REQUEST_BODY_BYTES_ANNOTATION = "tenantgw.io/max-request-body-bytes"

_N = TypeVar("_N", int, float)

_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")


@frozen
class NamespacePolicy:
    """
    What the operator allows one tenant namespace.

    C{allowed_hosts} are normalized patterns (lower case, no trailing dot)
    the tenant may claim besides its derived host.  A ceiling of L{None}
    means the operator set none.
    """

    allowed_hosts: tuple[str, ...] = ()
    max_requests_per_second: float | None = None
    max_burst: int | None = None
    max_concurrent_requests: int | None = None
    max_request_body_bytes: int | None = None


def _annotation_path(name: str) -> str:
    return f'metadata.annotations["{name}"]'


def parse_namespace_policy(
    annotations: Mapping[str, str],
) -> tuple[NamespacePolicy, tuple[FieldError, ...]]:
    """
    Read the operator's annotations, returning the policy and every problem.

    Any problem must make the caller reject the tenant's config with these
    errors, so that its last good config keeps serving.  Guessing would be
    wrong either way: ignoring a malformed ceiling lifts the operator's
    limit, and inventing a strict one throttles the tenant for the
    operator's typo.  The returned policy simply leaves out what was
    malformed (fine for status pages, not for serving while errors exist);
    a dropped allowed-hosts entry can only narrow what a tenant may claim.
    """
    errors: list[FieldError] = []

    def ceiling(name: str, parse: Callable[[str], float | int]) -> float | int | None:
        raw = annotations.get(name)
        if raw is None:
            return None
        try:
            return parse(raw.strip())
        except ValueError as exc:
            errors.append(FieldError(_annotation_path(name), f"{exc}, got {raw!r}"))
            return None

    max_rate = ceiling(MAX_REQUESTS_PER_SECOND_ANNOTATION, _positive_number)
    max_burst = ceiling(MAX_BURST_ANNOTATION, _positive_integer)
    max_concurrent = ceiling(MAX_CONCURRENT_REQUESTS_ANNOTATION, _positive_integer)
    max_body = ceiling(MAX_REQUEST_BODY_BYTES_ANNOTATION, _non_negative_integer)
    policy = NamespacePolicy(
        allowed_hosts=_parse_allowed_hosts(annotations.get(ALLOWED_HOSTS_ANNOTATION), errors),
        max_requests_per_second=None if max_rate is None else float(max_rate),
        max_burst=None if max_burst is None else int(max_burst),
        max_concurrent_requests=None if max_concurrent is None else int(max_concurrent),
        max_request_body_bytes=None if max_body is None else int(max_body),
    )
    return policy, tuple(errors)


def _positive_number(text: str) -> float:
    if not _DECIMAL.fullmatch(text) or not 0 < float(text) < math.inf:
        raise ValueError("must be a number greater than 0 (e.g. 100 or 2.5)")
    return float(text)


def _positive_integer(text: str) -> int:
    if not _INTEGER.fullmatch(text) or int(text) < 1:
        raise ValueError("must be a whole number of at least 1")
    return int(text)


def _non_negative_integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError("must be a whole number of at least 0")
    return int(text)


def _parse_allowed_hosts(raw: str | None, errors: list[FieldError]) -> tuple[str, ...]:
    if raw is None:
        return ()
    path = _annotation_path(ALLOWED_HOSTS_ANNOTATION)
    patterns: list[str] = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            pattern = names.validate_hostname(entry, allow_wildcard=True)
        except ValueError as exc:
            errors.append(FieldError(path, f"{entry!r}: {exc}"))
            continue
        if pattern not in patterns:
            patterns.append(pattern)
    return tuple(patterns)


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """
    May a tenant claim C{host} (itself possibly a wildcard) under these
    operator patterns?  C{*.a.b} covers one or more labels in front of
    C{a.b} -- so also the narrower wildcard C{*.x.a.b} -- but never C{a.b}
    itself; claiming C{*.a.b} needs exactly C{*.a.b}.  An exact pattern
    covers only that host.
    """
    claimed = _normalize(host)
    claimed_base = claimed[2:] if claimed.startswith("*.") else claimed
    for pattern in map(_normalize, patterns):
        if claimed == pattern:
            return True
        if pattern.startswith("*.") and claimed_base.endswith(pattern[1:]):
            # pattern[1:] is ".a.b"; claimed_base then has a label before it.
            return True
    return False


def _normalize(host: str) -> str:
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


def clamp_quota(quota: Quota, policy: NamespacePolicy) -> tuple[Quota, tuple[str, ...]]:
    """
    Bring a tenant's quota under the namespace ceilings, saying what changed.

    A ceiling is a limit that applies whether or not the tenant asked for
    one, so an unset value takes the ceiling.  The rate and burst ceilings
    bound the per-client bucket too: one client may never be allowed more
    than the whole tenant.  A burst ceiling alone cannot create a bucket
    (a burst with no refill rate means nothing), so it only bounds a rate
    that exists.
    """
    warnings: list[str] = []
    rate = _clamp_rate(quota.rate, "quota", policy, warnings, fill_unset=True)
    per_client = _clamp_rate(
        quota.per_client, "quota.perClient", policy, warnings, fill_unset=False
    )
    clamped = evolve(
        quota,
        rate=rate,
        per_client=per_client,
        max_concurrent_requests=_clamp_optional(
            quota.max_concurrent_requests,
            policy.max_concurrent_requests,
            "quota.maxConcurrentRequests",
            warnings,
        ),
        max_request_body_bytes=_clamp_optional(
            quota.max_request_body_bytes,
            policy.max_request_body_bytes,
            "quota.maxRequestBodyBytes",
            warnings,
        ),
    )
    return clamped, tuple(warnings)


def _clamp_rate(
    rate: RateLimit | None,
    path: str,
    policy: NamespacePolicy,
    warnings: list[str],
    *,
    fill_unset: bool,
) -> RateLimit | None:
    max_rate, max_burst = policy.max_requests_per_second, policy.max_burst
    if rate is None:
        if not fill_unset or max_rate is None:
            return None
        filled_burst = max_burst if max_burst is not None else max(1, math.ceil(max_rate))
        warnings.append(
            f"{path}.requestsPerSecond unset; namespace ceiling {_show(max_rate)} applies "
            f"(burst {filled_burst})"
        )
        return RateLimit(requests_per_second=max_rate, burst=filled_burst)
    return RateLimit(
        requests_per_second=_clamp(
            rate.requests_per_second, max_rate, f"{path}.requestsPerSecond", warnings
        ),
        burst=_clamp(rate.burst, max_burst, f"{path}.burst", warnings),
    )


def _clamp_optional(
    value: _N | None, ceiling: _N | None, path: str, warnings: list[str]
) -> _N | None:
    if value is None:
        if ceiling is not None:
            warnings.append(f"{path} unset; namespace ceiling {_show(ceiling)} applies")
        return ceiling
    return _clamp(value, ceiling, path, warnings)


def _clamp(value: _N, ceiling: _N | None, path: str, warnings: list[str]) -> _N:
    if ceiling is not None and value > ceiling:
        warnings.append(f"{path} {_show(value)} clamped to namespace ceiling {_show(ceiling)}")
        return ceiling
    return value


def _show(number: float) -> str:
    """C{100.0} reads as C{100} in a message a tenant will see."""
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)

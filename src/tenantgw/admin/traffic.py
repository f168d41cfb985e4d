"""
Per-tenant traffic for the dashboard: request rate, error ratio, p99 and 429s
over a recent window, computed on the gateway from its own counters.

The rate is computed here rather than in the browser so that the number the
page shows is the number C{/api/tenants} returns, which a test (or an
operator with curl) can check.  Samples are taken when the document is asked
for, on an injected clock, at most one per C{spacing} seconds: an idle
gateway keeps nothing and costs nothing.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

from attrs import frozen

# Seconds of traffic the dashboard's figures cover.
WINDOW_SECONDS = 30.0
SAMPLE_SPACING = 1.0
DAY = 86400.0
# A certificate this close to expiry is shown as a warning.
CERTIFICATE_WARNING_SECONDS = 14 * DAY


@frozen
class Totals:
    """A tenant's counters since the gateway started; buckets are per-bucket (not cumulative)."""

    requests: int = 0
    errors: int = 0
    too_many: int = 0
    buckets: tuple[float, ...] = ()


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """
    The C{q}-quantile of a histogram as Prometheus' C{histogram_quantile}
    computes it: linear interpolation inside the bucket holding the rank,
    the first bucket starting at 0, and the highest finite bound when the
    rank falls in C{+Inf}.  C{bounds} are the upper bounds, the last C{+Inf};
    C{cumulative} the counts at or under each.  NaN without observations.
    """
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(bounds) < 2 or not cumulative or cumulative[-1] == 0:
        return math.nan
    total = cumulative[-1]
    rank = q * total
    b = next(i for i, count in enumerate(cumulative) if count >= rank)
    if b == len(bounds) - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start = 0.0 if b == 0 else float(bounds[b - 1])
    below = 0.0 if b == 0 else cumulative[b - 1]
    in_bucket = cumulative[b] - below
    if in_bucket == 0:
        return float(bounds[b])
    return start + (float(bounds[b]) - start) * ((rank - below) / in_bucket)


class TrafficWindow:
    """Rates over the last C{window} seconds, from counter totals sampled on C{clock}."""

    def __init__(
        self,
        clock: Callable[[], float],
        bounds: Sequence[float],
        window: float = WINDOW_SECONDS,
        spacing: float = SAMPLE_SPACING,
    ) -> None:
        self.clock = clock
        self.bounds = (*bounds, math.inf)
        self.window = window
        self.spacing = spacing
        # Oldest first; the first is the base the rates are computed from.
        self.samples: deque[tuple[float, dict[str, Totals]]] = deque([(clock(), {})])

    def traffic(self, totals: dict[str, Totals]) -> dict[str, dict[str, object]]:
        now = self.clock()
        samples = self.samples
        if now - samples[-1][0] >= self.spacing:
            samples.append((now, totals))
        # Keep the newest sample at least a window old as the base.
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.popleft()
        base_time, base = samples[0]
        elapsed = now - base_time
        empty = Totals()
        result: dict[str, dict[str, object]] = {}
        for namespace, current in totals.items():
            before = base.get(namespace, empty)
            requests = current.requests - before.requests
            errors = current.errors - before.errors
            too_many = current.too_many - before.too_many
            buckets = [
                now_count - (before.buckets[i] if before.buckets else 0.0)
                for i, now_count in enumerate(current.buckets)
            ]
            cumulative: list[float] = []
            running = 0.0
            for count in buckets:
                running += count
                cumulative.append(running)
            p99 = histogram_quantile(0.99, self.bounds, cumulative) if cumulative else math.nan
            result[namespace] = {
                "windowSeconds": elapsed,
                "requestsPerSecond": requests / elapsed if elapsed > 0 else None,
                "errorRatio": errors / requests if requests else None,
                "p99Seconds": None if math.isnan(p99) else p99,
                "tooManyRequestsPerSecond": too_many / elapsed if elapsed > 0 else None,
                "requests": current.requests,
                "errors": current.errors,
                "tooManyRequests": current.too_many,
            }
        return result


def relative_time(seconds: float) -> str:
    """C{seconds} from now as an operator says it: "in 12 days", "expired 3 days ago"."""
    span = abs(seconds)
    for unit, size in (("day", DAY), ("hour", 3600.0), ("minute", 60.0)):
        if span >= size:
            count = int(span // size)
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            break
    else:
        text = "under a minute"
    return f"in {text}" if seconds >= 0 else f"expired {text} ago"


def certificate_document(expires: float, now: float) -> dict[str, object]:
    left = expires - now
    level = "expired" if left < 0 else "warn" if left < CERTIFICATE_WARNING_SECONDS else "ok"
    return {"inSeconds": left, "relative": relative_time(left), "level": level}

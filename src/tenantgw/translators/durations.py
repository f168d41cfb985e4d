"""
Gateway API durations (GEP-2257): ``1h``, ``500ms``, ``1m30s``.

The format is deliberately narrower than Go's ``time.ParseDuration``: at
most four components, each of at most five digits, units ``h``, ``m``,
``s``, ``ms``.  We also refuse a unit written twice (``1s1s``), which the
GEP's regular expression lets through but no person means.
"""

from __future__ import annotations

import re

_COMPONENT = re.compile(r"([0-9]{1,5})(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds, or L{ValueError} with a message for the object's status."""
    position = 0
    seen: set[str] = set()
    total = 0.0
    while position < len(text):
        found = _COMPONENT.match(text, position)
        if found is None:
            break
        unit = found.group(2)
        if unit in seen:
            raise ValueError(f"unit {unit!r} appears twice in {text!r}")
        seen.add(unit)
        total += int(found.group(1)) * _UNIT_SECONDS[unit]
        position = found.end()
    if not text or position != len(text) or len(seen) > 4:
        raise ValueError(
            f"{text!r} is not a Gateway API duration "
            "(up to four of <number><h|m|s|ms>, e.g. '1m30s', '500ms')"
        )
    return total

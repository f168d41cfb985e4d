"""
Runs an HTTP/1.1 test module against both fronts (C{--http1-front}).

L{both_fronts} adds, for every TestCase class of a module, a subclass that
runs the same tests on the other front: the site's class attribute is
patched for the test, and C{http1_front} names the front for tests that
start a real process (they pass C{--http1-front}).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.dataplane.gateway import GatewaySite
from tenantgw.dataplane.http1_front import DEFAULT_HTTP1_FRONT, HTTP1_FRONTS


class FrontMixin:
    """
    Selects C{http1_front} for the whole of each test, fixtures included
    (around C{run}, so that a class's own C{setUp} needs no super call).
    """

    http1_front = DEFAULT_HTTP1_FRONT

    def run(self, result: Any) -> Any:
        before = GatewaySite.__dict__["http1_front"]
        GatewaySite.http1_front = self.http1_front
        try:
            return super().run(result)  # type: ignore[misc]
        finally:
            GatewaySite.http1_front = before

    def front_args(self) -> list[str]:
        return [f"--http1-front={self.http1_front}"]


def both_fronts(namespace: dict[str, Any]) -> None:
    """
    For each TestCase class in C{namespace} (a module's globals) that mixes
    in L{FrontMixin}, adds one subclass per other front, named after it.
    """
    for name, value in list(namespace.items()):
        if not (
            isinstance(value, type)
            and issubclass(value, SynchronousTestCase)
            and issubclass(value, FrontMixin)
            and not name.startswith("_")
        ):
            continue
        for front in HTTP1_FRONTS:
            if front == value.http1_front:
                continue
            variant = f"{name}_{front.capitalize()}Front"
            namespace[variant] = type(
                variant, (value,), {"http1_front": front, "__module__": value.__module__}
            )

"""
Regular-expression matching (RE2) and the other Ingress-only conditions:
cookie matches, header patterns, rewrite-target templates.  A hostile
pattern from a tenant must cost microseconds, never backtrack.
"""

from __future__ import annotations

import time

from twisted.trial.unittest import SynchronousTestCase

from tenantgw.compile.lowering import plan_match
from tenantgw.config.model import PATH_REGEX, CookieMatch, HeaderMatch, RouteMatch
from tenantgw.dataplane.matching import matches, matches_path
from tenantgw.wire.paths import expand_target


def lookup(headers: dict[bytes, list[bytes]]):  # type: ignore[no-untyped-def]
    return headers.get


class RegexPathTests(SynchronousTestCase):
    def test_anchored_at_the_start_case_insensitive(self) -> None:
        plan = plan_match(RouteMatch(path="/api(/|$)(.*)", path_type=PATH_REGEX))
        self.assertTrue(matches_path(plan, b"/api"))
        self.assertTrue(matches_path(plan, b"/API/v1"))
        self.assertFalse(matches_path(plan, b"/v1/api"))
        self.assertFalse(matches_path(plan, b"/apix"))

    def test_backtracking_pattern_stays_linear(self) -> None:
        plan = plan_match(RouteMatch(path="/(a+)+$", path_type=PATH_REGEX))
        hostile = b"/" + b"a" * 100_000 + b"!"
        started = time.perf_counter()
        self.assertFalse(matches_path(plan, hostile))
        elapsed = time.perf_counter() - started
        # Python's re needs years for this input; RE2 is linear. The bound is
        # generous (a loaded CI machine), the failure mode is not subtle.
        self.assertLess(elapsed, 0.5)


class OtherConditionTests(SynchronousTestCase):
    def test_header_pattern_searches_the_value(self) -> None:
        plan = plan_match(
            RouteMatch(headers=(HeaderMatch("x-canary", "^(always|beta-.*)$", regex=True),))
        )
        self.assertTrue(matches(plan, b"GET", b"/", lookup({b"x-canary": [b"beta-7"]}), None))
        self.assertFalse(matches(plan, b"GET", b"/", lookup({b"x-canary": [b"never"]}), None))
        self.assertFalse(matches(plan, b"GET", b"/", lookup({}), None))

    def test_cookie_value(self) -> None:
        plan = plan_match(RouteMatch(cookies=(CookieMatch("canary", "always"),)))
        self.assertTrue(
            matches(plan, b"GET", b"/", lookup({b"cookie": [b"a=1; canary=always"]}), None)
        )
        self.assertFalse(matches(plan, b"GET", b"/", lookup({b"cookie": [b"canary=never"]}), None))
        self.assertFalse(matches(plan, b"GET", b"/", lookup({}), None))


class ExpandTargetTests(SynchronousTestCase):
    def test_groups(self) -> None:
        self.assertEqual(expand_target(b"/$2", (b"/", b"v1/x")), b"/v1/x")
        self.assertEqual(expand_target(b"/new/$1", (b"a",)), b"/new/a")
        self.assertEqual(expand_target(b"/$3", (b"a",)), b"/")
        self.assertEqual(expand_target(b"$1", (b"x",)), b"/x")
        self.assertEqual(expand_target(b"/$1", (None,)), b"/")

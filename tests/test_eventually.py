"""
The wait helper is what turns a missing behaviour into a failure with a
reason instead of a 120 s hang, so its own failure path is tested, and so
is returning at once, which is what keeps waits off the suite's time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.eventually import (
    DEFAULT_TIMEOUT,
    ThreadedClock,
    eventually,
    eventually_advancing,
    eventually_blocking,
    eventually_on_clock,
)
from tests.h2_raw import RawH2Client


class Counter:
    def __init__(self, until: int = 0) -> None:
        self.calls = 0
        self.until = until

    def __call__(self) -> int:
        self.calls += 1
        return self.calls if self.calls >= self.until else 0


class EventuallyTests(SynchronousTestCase):
    def test_returns_the_first_true_value_without_waiting(self) -> None:
        check = Counter(until=1)
        self.assertEqual(self.successResultOf(eventually(check, clock=Clock())), 1)
        self.assertEqual(check.calls, 1)

    def test_returns_on_the_poll_where_the_condition_first_holds(self) -> None:
        clock = Clock()
        check = Counter(until=3)
        waiting = eventually(check, "three calls", clock=clock, interval=0.5)
        self.assertNoResult(waiting)
        clock.advance(0.5)
        self.assertNoResult(waiting)
        clock.advance(0.5)
        self.assertEqual(self.successResultOf(waiting), 3)
        self.assertEqual(check.calls, 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fails_after_the_timeout_naming_what_and_the_last_value(self) -> None:
        clock = Clock()
        values = iter(range(1000))
        waiting = eventually(
            lambda: next(values) < 0, "the count went negative", timeout=1.0, clock=clock
        )
        clock.pump([0.02] * 49)
        self.assertNoResult(waiting)
        clock.pump([0.02] * 2)
        failure = self.failureResultOf(waiting, AssertionError)
        self.assertEqual(str(failure.value), "not within 1s: the count went negative (last: False)")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_without_a_description_the_check_docstring_names_the_wait(self) -> None:
        def upstream_connected() -> list[str]:
            """the upstream saw a connection"""
            return []

        clock = Clock()
        waiting = eventually(upstream_connected, timeout=0.1, clock=clock)
        clock.pump([0.02] * 10)
        failure = self.failureResultOf(waiting, AssertionError)
        self.assertIn("the upstream saw a connection (last: [])", str(failure.value))

    def test_expect_compares_and_reports_the_last_value(self) -> None:
        clock = Clock()
        served = ["blue"]
        waiting = eventually(lambda: served[0], "served by green", expect="green", clock=clock)
        clock.pump([0.02] * 600)
        failure = self.failureResultOf(waiting, AssertionError)
        self.assertIn("served by green (last: 'blue')", str(failure.value))

        served[0] = "green"
        waiting = eventually(lambda: served[0], expect="green", clock=clock)
        self.assertEqual(self.successResultOf(waiting), "green")

    def test_until_judges_the_value_and_the_failure_shows_it(self) -> None:
        clock = Clock()
        page = ["Loading"]
        waiting = eventually(
            lambda: page[0], "'3 tenants' shown", until=lambda t: "3 tenants" in t, clock=clock
        )
        clock.pump([0.02] * 600)
        failure = self.failureResultOf(waiting, AssertionError)
        self.assertIn("'3 tenants' shown (last: 'Loading')", str(failure.value))
        page[0] = "3 tenants, 3 serving"
        waiting = eventually(lambda: page[0], until=lambda t: "3 tenants" in t, clock=clock)
        self.assertEqual(self.successResultOf(waiting), "3 tenants, 3 serving")

    def test_a_deferred_result_is_waited_for(self) -> None:
        clock = Clock()
        answers: list[Deferred[int]] = []

        def request() -> Deferred[int]:
            answers.append(Deferred())
            return answers[-1]

        waiting = eventually(request, expect=200, clock=clock)
        answers[0].callback(503)
        clock.advance(0.02)
        self.assertEqual(len(answers), 2)
        answers[1].callback(200)
        self.assertEqual(self.successResultOf(waiting), 200)

    def test_ignored_errors_count_as_not_yet_and_others_fail_at_once(self) -> None:
        clock = Clock()
        attempts: list[int] = []

        def connect() -> Deferred[str]:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionRefusedError("not listening yet")
            return succeed("connected")

        waiting = eventually(connect, ignoring=(ConnectionRefusedError,), clock=clock)
        clock.pump([0.02, 0.02])
        self.assertEqual(self.successResultOf(waiting), "connected")

        def broken() -> Any:
            raise KeyError("a bug, not a wait")

        self.failureResultOf(
            eventually(broken, ignoring=(ConnectionRefusedError,), clock=clock), KeyError
        )

    def test_an_ignored_error_is_the_last_value_reported(self) -> None:
        clock = Clock()

        def refused() -> Any:
            raise ConnectionRefusedError("port 1")

        waiting = eventually(refused, "the port answers", 0.1, ignoring=(OSError,), clock=clock)
        clock.pump([0.02] * 10)
        failure = self.failureResultOf(waiting, AssertionError)
        self.assertIn(
            "the port answers (last: ConnectionRefusedError('port 1'))", str(failure.value)
        )

    def test_the_default_bound_is_far_below_trials_timeout(self) -> None:
        self.assertLessEqual(DEFAULT_TIMEOUT, 120 / 4)


class EventuallyOnClockTests(SynchronousTestCase):
    def test_returns_without_advancing_when_the_condition_holds(self) -> None:
        clock = Clock()
        self.assertEqual(eventually_on_clock(clock, lambda: "yes"), "yes")
        self.assertEqual(clock.seconds(), 0)

    def test_advances_the_clock_until_the_condition_holds(self) -> None:
        clock = Clock()
        fired: list[bool] = []
        clock.callLater(5, fired.append, True)
        self.assertEqual(eventually_on_clock(clock, lambda: fired, interval=0.5), [True])
        self.assertEqual(clock.seconds(), 5)

    def test_fails_after_the_timeout_of_clock_time(self) -> None:
        clock = Clock()
        with self.assertRaises(AssertionError) as caught:
            eventually_on_clock(clock, lambda: 0, "the probe ran", timeout=3, expect=1)
        self.assertEqual(str(caught.exception), "not within 3s: the probe ran (last: 0)")
        self.assertAlmostEqual(clock.seconds(), 3, places=6)


class EventuallyOnTheReactorTests(TestCase):
    def test_fires_soon_after_the_condition_holds(self) -> Any:
        done: list[bool] = []
        reactor.callLater(0.05, done.append, True)
        started = reactor.seconds()
        waiting = eventually(lambda: done, "the call ran")

        def elapsed(value: Any) -> None:
            self.assertEqual(value, [True])
            self.assertLess(reactor.seconds() - started, 1.0)

        return waiting.addCallback(elapsed)


class EventuallyBlockingTests(SynchronousTestCase):
    def test_returns_the_first_true_value_without_sleeping(self) -> None:
        check = Counter(until=1)
        self.assertEqual(eventually_blocking(check, interval=60), 1)
        self.assertEqual(check.calls, 1)

    def test_retries_through_ignored_errors(self) -> None:
        attempts: list[int] = []

        def connect() -> str:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionRefusedError()
            return "up"

        self.assertEqual(eventually_blocking(connect, ignoring=(OSError,), interval=0.001), "up")

    def test_fails_naming_what_and_the_last_value(self) -> None:
        with self.assertRaises(AssertionError) as caught:
            eventually_blocking(lambda: 7, "the backend is up", 0.01, expect=8, interval=0.001)
        self.assertEqual(str(caught.exception), "not within 0.01s: the backend is up (last: 7)")


class RawH2WaitTests(SynchronousTestCase):
    """The raw HTTP/2 client waits on frames, not polls, and fails the same way."""

    def test_fires_when_a_frame_makes_the_condition_hold(self) -> None:
        clock = Clock()
        client = RawH2Client(clock)
        waiting = client.wait_for(lambda: client.lost, what="the connection closed")
        self.assertNoResult(waiting)
        client.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(waiting))
        self.failureResultOf(client.ready, ConnectionDone)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fails_naming_what_it_waited_for(self) -> None:
        clock = Clock()
        client = RawH2Client(clock)
        waiting = client.answered(3, timeout=2)
        clock.advance(2)
        failure = self.failureResultOf(waiting, AssertionError)
        self.assertEqual(
            str(failure.value),
            "not within 2s: stream 3 answered (last: {'responses': [], 'lost': False})",
        )


class EventuallyAdvancingTests(SynchronousTestCase):
    def test_fires_with_the_clock_time_the_condition_took(self) -> None:
        clock = Clock()
        fired: list[bool] = []
        clock.callLater(5, fired.append, True)
        took = self.successResultOf(eventually_advancing(clock, lambda: fired, step=0.5))
        self.assertAlmostEqual(took, 5.0)

    def test_fails_after_the_timeout_of_clock_time(self) -> None:
        clock = Clock()
        failure = self.failureResultOf(
            eventually_advancing(clock, lambda: [], "the follower leads", 2), AssertionError
        )
        self.assertEqual(str(failure.value), "not within 2s: the follower leads (last: [])")


class EventuallyAdvancingWithIOTests(TestCase):
    def test_time_stands_still_while_io_is_in_flight(self) -> Any:
        clock = ThreadedClock()
        start = clock.seconds()
        in_flight = [True]
        reactor.callLater(0.05, in_flight.clear)
        seen: list[float] = []

        def check() -> bool:
            seen.append(clock.seconds() - start)
            return len(seen) == 2

        def done(took: float) -> None:
            # The first check ran only once the I/O settled, at clock time 0.
            self.assertEqual(seen[0], 0.0)
            self.assertAlmostEqual(seen[1], 0.1, places=3)
            self.assertAlmostEqual(took, 0.1, places=3)

        return eventually_advancing(clock, check, settled=lambda: not in_flight).addCallback(done)

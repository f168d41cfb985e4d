"""
The one wait-for-a-condition helper of the tests.

L{eventually} polls (every 20 ms by default) instead of sleeping a fixed
time, returns as soon as the condition holds, and fails after a bounded
time (10 s by default, far below trial's 120 s) with an C{AssertionError}
naming what it waited for and the last value it saw, instead of hanging
until trial's timeout.  L{eventually_on_clock} is its twin for
C{SynchronousTestCase} tests on a L{twisted.internet.task.Clock}: it advances
the clock instead of waiting; L{eventually_advancing} does the same for
code that also does real I/O (with L{ThreadedClock} for code whose blocking
calls run in a thread pool); L{eventually_blocking} is the one for code
that cannot yield to the reactor.  All of them fail the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock, deferLater

DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 0.02

_TRUTHY = object()


def not_within(what: str, timeout: float, last: Any) -> AssertionError:
    """The failure of a wait: what did not happen, within how long, and what was seen instead."""
    return AssertionError(f"not within {timeout:g}s: {what} (last: {last!r})")


def _condition(expect: Any, until: Callable[[Any], object] | None) -> Callable[[Any], bool]:
    if until is not None:
        return lambda value: bool(until(value))
    if expect is not _TRUTHY:
        return lambda value: bool(value == expect)
    return bool


def _describe(check: Callable[..., Any], what: str) -> str:
    return what or (check.__doc__ or "").strip() or repr(check)


def eventually(
    check: Callable[[], Any],
    what: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    expect: Any = _TRUTHY,
    until: Callable[[Any], object] | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
    interval: float = DEFAULT_INTERVAL,
    clock: Any = None,
) -> Deferred[Any]:
    """
    Fires with C{check()}'s first value that is true (or, with C{expect},
    equal to C{expect}, or, with C{until}, for which C{until(value)} is
    true); fails after C{timeout} seconds of C{clock}'s time naming
    C{what} (by default the check's docstring or its repr) and the last
    value.

    C{check} may return a Deferred (an HTTP request, say): its result is
    the value.  An exception of one of the C{ignoring} types counts as
    "not yet" (a port not listening yet); any other fails at once.
    C{clock} schedules the polls and measures the timeout (the global
    reactor by default; a L{Clock} makes the wait deterministic).
    """
    description = _describe(check, what)
    scheduler = clock if clock is not None else global_reactor

    holds = _condition(expect, until)

    async def poll() -> Any:
        deadline = scheduler.seconds() + timeout
        while True:
            try:
                value = check()
                if isinstance(value, Deferred):
                    value = await value
            except ignoring as error:
                value = error
            else:
                if holds(value):
                    return value
            if scheduler.seconds() >= deadline:
                raise not_within(description, timeout, value)
            await deferLater(scheduler, interval, lambda: None)

    return ensureDeferred(poll())


def eventually_on_clock(
    clock: Clock,
    check: Callable[[], Any],
    what: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    expect: Any = _TRUTHY,
    until: Callable[[Any], object] | None = None,
    interval: float = 0.1,
) -> Any:
    """
    Advances C{clock} by C{interval} until C{check()} holds (as for
    L{eventually}: true, equal to C{expect}, or C{until} of it) and returns that value; raises once C{timeout} seconds of the
    clock's time have passed, naming C{what} and the last value.  The check
    runs before the first advance, so nothing is advanced if it already holds.
    """
    description = _describe(check, what)
    holds = _condition(expect, until)
    started = clock.seconds()
    while True:
        value = check()
        if holds(value):
            return value
        if clock.seconds() - started >= timeout:
            raise not_within(description, timeout, value)
        clock.advance(interval)


class ThreadedClock(Clock):
    """
    A L{Clock} for code that keeps its timers on its reactor but runs
    blocking calls (a Kubernetes client) in a thread pool: the pool's
    results come back through the real reactor's C{callFromThread}, while
    C{seconds} and C{callLater} stay the clock's, so the test decides when
    time passes.  Starts at the current wall time, so that timestamps the
    code writes look like real ones.
    """

    def __init__(self) -> None:
        super().__init__()
        self.advance(time.time())

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        global_reactor.callFromThread(f, *args, **kwargs)


def eventually_advancing(
    clock: Clock,
    check: Callable[[], Any],
    what: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    settled: Callable[[], object] = lambda: True,
    step: float = 0.1,
) -> Deferred[float]:
    """
    L{eventually_on_clock} for code that also does real I/O: advances
    C{clock} by C{step} until C{check()} holds, and fires with the clock time
    that took; fails once C{timeout} seconds of clock time have passed,
    naming C{what} and the last value.  Before each step it waits (in real
    time, with L{eventually}) until C{settled()} holds, so that no I/O is
    in flight while time moves on (a reply is not made late by the test).
    """
    description = _describe(check, what)

    async def advance() -> float:
        started = clock.seconds()
        while True:
            await eventually(settled, "the I/O in flight answered")
            value = check()
            if value:
                return clock.seconds() - started
            if clock.seconds() - started >= timeout:
                raise not_within(description, timeout, value)
            clock.advance(step)

    return ensureDeferred(advance())


def eventually_blocking(
    check: Callable[[], Any],
    what: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    *,
    expect: Any = _TRUTHY,
    until: Callable[[Any], object] | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
    interval: float = DEFAULT_INTERVAL,
) -> Any:
    """
    L{eventually} for code that cannot yield to the reactor (a helper
    process started before any test runs, a browser driven from a thread):
    sleeps between checks and returns the value or raises the same failure.
    """
    description = _describe(check, what)
    holds = _condition(expect, until)
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except ignoring as error:
            value = error
        else:
            if holds(value):
                return value
        if time.monotonic() >= deadline:
            raise not_within(description, timeout, value)
        time.sleep(interval)

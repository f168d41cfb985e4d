"""
The one wait-for-a-condition helper for tests on real sockets or processes.

It polls (every 20 ms) instead of sleeping a fixed time, and fails with the
description of what did not happen instead of hanging until trial's timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater


def eventually(check: Callable[[], Any], what: str = "", timeout: float = 10.0) -> Deferred[Any]:
    """
    Fires with C{check()}'s first true value; fails after C{timeout} seconds
    naming C{what} (by default the check's docstring or its repr).
    """
    what = what or check.__doc__ or repr(check)

    @inlineCallbacks
    def poll() -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:g}s: {what} (last: {value!r})")
            yield deferLater(reactor, 0.02, lambda: None)

    result: Deferred[Any] = poll()
    return result

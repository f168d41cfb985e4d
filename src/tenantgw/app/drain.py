"""
Graceful stop: on SIGTERM a rolling update must not lose a request.

twistd stops the application on reactor shutdown and waits for the Deferred
that C{stopService} returns.  Every child of the gateway's MultiService is
stopped in the same turn, so at once the listeners stop accepting and
readiness answers 503; this service's Deferred then holds the reactor up
until the requests already routed are answered, or the grace period ends.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tenantgw.admin.resource import Readiness

_log = Logger()

# How often the count of open requests is looked at while draining: the
# reactor is busy answering them, so a timer is simpler than a callback on
# every request end, and costs the data plane nothing.
POLL_INTERVAL = 0.05


class DrainService(MultiService):
    """
    Its children (the admin listener) stop only once the drain is over, so
    that probes keep reading 503 rather than finding the port closed.
    """

    def __init__(
        self,
        readiness: Readiness,
        open_requests: Callable[[], int],
        clock: IReactorTime,
        timeout: float,
        drained: Callable[[], object] = lambda: None,
        began: Callable[[], object] = lambda: None,
    ) -> None:
        super().__init__()
        self.readiness = readiness
        self.open_requests = open_requests
        self.clock = clock
        self.timeout = timeout
        self.drained = drained
        self.began = began

    def stopService(self) -> Deferred[None]:
        self.readiness.draining = True
        self.began()
        deadline = self.clock.seconds() + self.timeout
        _log.info(
            "draining: {count} requests in flight, up to {timeout}s",
            count=self.open_requests(),
            timeout=self.timeout,
        )

        def check() -> None:
            count = self.open_requests()
            if count <= 0:
                _log.info("drained: every request answered")
                loop.stop()
            elif self.clock.seconds() >= deadline:
                _log.warn(
                    "drain period over: {count} requests still in flight are cut", count=count
                )
                loop.stop()

        loop = LoopingCall(check)
        loop.clock = self.clock
        finished: Deferred[None] = loop.start(POLL_INTERVAL, now=True).addCallback(lambda _: None)
        finished.addCallback(lambda _: self.drained())
        finished.addCallback(lambda _: MultiService.stopService(self))
        finished.addCallback(lambda _: None)
        return finished

"""
The access log: one JSON object per line for every answered request.

Lines are twisted.logger events (namespace C{tenantgw.access}) given to their
own file observer, so they never mix with the gateway's operational log and every
line parses on its own: request data (paths, hosts) is escaped by
C{json.dumps}, never formatted into text.

Lines are batched and written once a second (or every L{MAX_BATCH} lines):
a write system call per request would cost the data plane more than
building the line.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import FileLogObserver, LogLevel

from tenantgw.dataplane.context import Outcome, outcome_of

if TYPE_CHECKING:
    from tenantgw.dataplane.request import GatewayRequest

NAMESPACE = "tenantgw.access"
FLUSH_INTERVAL = 1.0
# Lines held at most before they are written anyway.
MAX_BATCH = 1000


def _line(event: dict[str, Any]) -> str | None:
    line: str | None = event.get("access_line")
    return line


def open_destination(destination: str) -> IO[bytes] | None:
    """
    C{stdout} (the process's real fd 1: twistd redirects C{sys.stdout} into
    its own log), C{off}, or a path, appended to.
    """
    if destination == "off":
        return None
    if destination == "stdout":
        return open(os.dup(1), "wb", buffering=0)
    return open(destination, "ab", buffering=0)


class _Batch:
    """
    What the file observer writes to.  FileLogObserver flushes after every
    event, which would be a system call per request; here lines collect and
    go out in one write per interval, whole lines only, so workers appending
    to one file never interleave inside a line.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        lines = self.lines
        lines.append(text)
        if len(lines) >= MAX_BATCH:
            self.drain()

    def flush(self) -> None:
        """The observer's flush after each event: deliberately nothing."""

    def drain(self) -> None:
        lines, self.lines = self.lines, []
        if lines:
            # A closed or full destination must not take the gateway down.
            with contextlib.suppress(OSError, ValueError):
                self.out.write("".join(lines).encode("utf-8"))


class AccessLog:
    def __init__(self, out: IO[bytes], clock: IReactorTime) -> None:
        self.out = out
        self._batch = _Batch(out)
        self.observer = FileLogObserver(cast("IO[Any]", self._batch), _line)
        self._flusher = LoopingCall(self.flush)
        self._flusher.clock = clock
        self._second = -1
        self._pid = os.getpid()
        self._second_text = ""

    def start(self) -> None:
        # Which process answered, when --workers runs several; taken at start,
        # after twistd has forked into the background.
        self._pid = os.getpid()
        if not self._flusher.running:
            self._flusher.start(FLUSH_INTERVAL, now=False)

    def stop(self) -> None:
        if self._flusher.running:
            self._flusher.stop()
        self.flush()

    def flush(self) -> None:
        self._batch.drain()

    def request_finished(self, request: GatewayRequest, now: float, duration: float) -> None:
        """The site's report of a request's end: one line from its L{Outcome}."""
        self.record(outcome_of(request, duration), now)

    def record(self, outcome: Outcome, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
        # An event handed straight to the observer: Logger.emit validates the
        # level against every LogLevel constant, which alone costs more than
        # building the line.
        self.observer(
            {
                "log_namespace": NAMESPACE,
                "log_level": LogLevel.info,
                "log_time": now,
                "log_format": None,
                "access_line": line_of(
                    outcome, self._second_text, int((now - second) * 1000), self._pid
                ),
            }
        )


def host_without_port(host: bytes) -> bytes:
    """C{a.example:8080} -> C{a.example}, C{[::1]:8080} -> C{[::1]}: the host tenants match on."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[: end + 1] if end > 0 else host
    name, colon, port = host.rpartition(b":")
    return name if colon and port.isdigit() else host


def line_of(outcome: Outcome, second: str, millisecond: int, pid: int) -> str:
    """
    The JSON line, formatted by hand: C{json.dumps} of a dict costs several
    times more, and this runs for every request.  Every string that can carry
    client data goes through the JSON string encoder; the fields that repeat
    from request to request (tenant, host, route, method; upstream, client)
    are encoded once and reused.  C{reason} is from a fixed vocabulary
    (L{tenantgw.dataplane.context.REASONS}), never from the request.
    """
    where = (
        outcome.tenant,
        host_without_port(outcome.host),
        outcome.route,
        outcome.method,
    )
    middle = _WHERE.get(where)
    if middle is None:
        middle = _remember(
            _WHERE,
            where,
            f'"tenant":{_string(where[0])},"host":{_string(where[1].decode("latin-1"))},'
            f'"route":{_string(where[2])},"method":{_string(where[3].decode("latin-1"))}',
        )
    peers = (outcome.endpoint, outcome.client)
    tail = _PEERS.get(peers)
    if tail is None:
        tail = _remember(
            _PEERS, peers, f'"upstream":{_string(peers[0])},"client":{_string(peers[1])}'
        )
    return _LINE % (
        second,
        millisecond,
        _string(outcome.request_id.decode("latin-1")),
        middle,
        _string(outcome.path.decode("latin-1")),
        outcome.status,
        outcome.reason,
        outcome.bytes_sent,
        outcome.duration * 1000,
        tail,
        pid,
    )


_FRAGMENTS_MAX = 10_000
_WHERE: dict[tuple[str, bytes, str, bytes], str] = {}
_PEERS: dict[tuple[str, str], str] = {}


def _remember(cache: dict[Any, str], key: Any, fragment: str) -> str:
    """Bounded by clearing: a flood of distinct hosts or clients cannot grow it."""
    if len(cache) >= _FRAGMENTS_MAX:
        cache.clear()
    cache[key] = fragment
    return fragment


_string = json.encoder.encode_basestring_ascii
_LINE = (
    '{"time":"%s.%03dZ","request_id":%s,%s,'
    '"path":%s,"status":%d,"reason":"%s","bytes":%d,"duration_ms":%.3f,%s,"pid":%d}\n'
)

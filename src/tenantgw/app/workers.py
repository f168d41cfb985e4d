"""
``--workers N``: N processes serve the same listening sockets.

A Twisted reactor uses one core; past that, a gateway scales by processes.
The process twistd starts becomes a supervisor: it binds the listeners
(HTTP, HTTPS and admin), starts N workers that inherit them, and serves
nothing itself.  Each worker is a whole gateway (its own reactor, source and
quota state) that adopts the inherited sockets instead of binding, so the
kernel spreads new connections over the workers.

SIGTERM to the supervisor closes its copies of the sockets and passes the
signal on; each worker drains as a single gateway does, and the supervisor
exits when the last worker has.  A worker that dies otherwise is restarted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import IO, Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, textFileLogObserver
from twisted.python.failure import Failure

_log = Logger()

LISTENERS = ("http", "https", "admin")
# Inherited sockets are numbered from here in each worker.
FIRST_FD = 3
RESTART_DELAY = 1.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def bind(description: str) -> socket.socket:
    """
    A listening socket for a C{tcp:PORT[:interface=ADDR]} or C{unix:PATH}
    endpoint string: the forms that can be shared between processes.
    """
    kind, _, rest = description.partition(":")
    parts = rest.split(":")
    params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if kind == "tcp":
        interface = params.get("interface", "")
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, int(parts[0])))
    elif kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(parts[0]):
            os.unlink(parts[0])
        sock.bind(parts[0])
    else:
        raise ValueError(f"--workers needs tcp: or unix: listeners, not {description!r}")
    sock.listen(int(params.get("backlog", 128)))
    sock.setblocking(False)
    return sock


def worker_arguments(argv: Sequence[str]) -> list[str]:
    """The tenantgw options this process was started with, for its workers."""
    args = list(argv)
    try:
        start = args.index("tenantgw") + 1
    except ValueError:
        raise ValueError("cannot find the tenantgw options in the command line") from None
    result: list[str] = []
    rest = iter(args[start:])
    for arg in rest:
        if arg == "--workers":
            next(rest, None)  # and its value
        elif not arg.startswith("--workers="):
            result.append(arg)
    return result


class _Worker(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.ended: Deferred[None] = Deferred()
        self.buffer = b""

    def errReceived(self, data: bytes) -> None:
        # The worker's twistd log, relayed line by line into this process's log.
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            _log.info(
                "worker {number}: {line}",
                number=self.number,
                line=line.decode("utf-8", "replace"),
            )

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor.worker_ended(self, reason)


class WorkerSupervisor(Service):
    def __init__(
        self, reactor: Any, count: int, descriptions: dict[str, str], arguments: list[str]
    ) -> None:
        self.reactor = reactor
        self.count = count
        self.descriptions = descriptions
        self.arguments = arguments
        self.sockets: dict[str, socket.socket] = {}
        self.workers: dict[int, tuple[_Worker, Any]] = {}

    def startService(self) -> None:
        super().startService()
        # Bound here, before any worker starts, so that a port that cannot be
        # bound stops twistd at once, as a single process does.
        for name in LISTENERS:
            self.sockets[name] = bind(self.descriptions[name])
        for number in range(self.count):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        inherited = ",".join(f"{name}={FIRST_FD + i}" for i, name in enumerate(LISTENERS))
        child_fds: dict[int, int | str] = {0: 0, 1: 1, 2: "r"}
        for i, name in enumerate(LISTENERS):
            child_fds[FIRST_FD + i] = self.sockets[name].fileno()
        argv = [
            sys.executable,
            "-c",
            "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            "-n",
            "--pidfile=",
            "--logger=tenantgw.app.workers.stderr_observer",
            "tenantgw",
            *self.arguments,
            f"--inherited-listeners={inherited}",
        ]
        worker = _Worker(self, number)
        transport = self.reactor.spawnProcess(
            worker, sys.executable, argv, env=os.environ, childFDs=child_fds
        )
        self.workers[number] = (worker, transport)
        _log.info("worker {number} started, pid {pid}", number=number, pid=transport.pid)

    def worker_ended(self, worker: _Worker, reason: Failure) -> None:
        current = self.workers.get(worker.number)
        if current is None or current[0] is not worker:
            return
        if self.running:
            _log.warn(
                "worker {number} ended unexpectedly ({reason}): restarting in {delay}s",
                number=worker.number,
                reason=reason.getErrorMessage(),
                delay=RESTART_DELAY,
            )
            # Not at once: a worker that cannot start would otherwise spin.
            self.reactor.callLater(RESTART_DELAY, self._respawn, worker.number)

    def _respawn(self, number: int) -> None:
        if self.running:
            self._spawn(number)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        for sock in self.sockets.values():
            sock.close()
        for name in LISTENERS:
            description = self.descriptions[name]
            if description.startswith("unix:"):
                path = description[5:].split(":")[0]
                if os.path.exists(path):
                    os.unlink(path)
        ended = []
        for worker, transport in self.workers.values():
            if not worker.ended.called:
                with contextlib.suppress(Exception):  # already gone
                    transport.signalProcess(signal.SIGTERM)
                ended.append(worker.ended)
        return DeferredList(ended)


def die_with_supervisor() -> None:
    """
    A worker gets SIGTERM (and so drains) if its supervisor dies without
    passing the signal on, e.g. on SIGKILL: no orphan keeps serving.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stderr_observer() -> Any:
    """twistd --logger for workers: their log goes to the supervisor over stderr."""
    return textFileLogObserver(cast(IO[Any], sys.__stderr__))


def adopted_family(fd: int) -> socket.AddressFamily:
    probe = socket.socket(fileno=fd)
    try:
        return probe.family
    finally:
        probe.detach()


def parse_inherited(text: str) -> dict[str, int]:
    result = {}
    for part in filter(None, text.split(",")):
        name, _, number = part.partition("=")
        if name not in LISTENERS or not number.isdigit():
            raise ValueError(f"bad inherited listener {part!r}")
        result[name] = int(number)
    return result


class AdoptedListener(Service):
    """A listener on a socket the supervisor bound: adopted at start, never bound here."""

    def __init__(self, reactor: Any, fd: int, factory: Any) -> None:
        self.reactor = reactor
        self.fd = fd
        self.factory = factory
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        die_with_supervisor()
        self.port = self.reactor.adoptStreamPort(self.fd, adopted_family(self.fd), self.factory)
        # The reactor's port holds its own duplicate; this one is not needed.
        os.close(self.fd)

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None

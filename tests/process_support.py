"""
Runs ``twistd -n tenantgw`` as a real process, the way the README and the
container do, listening on UNIX sockets in a temporary directory so that
tests never race each other for TCP ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectError
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseFailed, ResponseNeverReceived, readBody
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from tests.eventually import eventually
from tests.support import dump, tenant_objects


@implementer(IAgentEndpointFactory)
class _UNIXEndpointFactory:
    def __init__(self, path: str) -> None:
        self.path = path

    def endpointForURI(self, uri: object) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(reactor, self.path)


class GatewayProcess:
    def __init__(
        self,
        workdir: str,
        source_dir: str,
        extra: list[str] | None = None,
        admin_port: int | None = None,
        source: str | None = None,
    ) -> None:
        """
        With C{admin_port}, the admin endpoint listens on that loopback TCP
        port instead of a UNIX socket, for clients (a browser) that need one.
        C{source} replaces the C{dir:} source of C{source_dir} (for example
        C{kubernetes}, with C{--kubeconfig} in C{extra}).
        """
        workdir = os.path.abspath(workdir)
        source_dir = os.path.abspath(source_dir)
        self.workdir = workdir
        # AF_UNIX paths are limited to ~107 bytes; trial's temp paths are longer.
        self.socket_dir = tempfile.mkdtemp(prefix="tgw-")
        self.http_socket = os.path.join(self.socket_dir, "http.sock")
        self.admin_socket = os.path.join(self.socket_dir, "admin.sock")
        self.https_socket = os.path.join(self.socket_dir, "https.sock")
        self.log_path = os.path.join(workdir, "gateway.log")
        self.admin_port = admin_port
        admin = (
            f"tcp:{admin_port}:interface=127.0.0.1"
            if admin_port is not None
            else f"unix:{self.admin_socket}"
        )
        command = [
            sys.executable,
            "-c",
            "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            "-n",
            "--pidfile=",
            f"--logfile={self.log_path}",
            "tenantgw",
            f"--source={source or 'dir:' + source_dir}",
            f"--http=unix:{self.http_socket}",
            f"--admin={admin}",
            f"--https=unix:{self.https_socket}",
            "--poll-interval=0.2",
            f"--access-log={os.path.join(workdir, 'access.log')}",
            *(extra or []),
        ]
        self.process = subprocess.Popen(command, cwd=workdir)

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """VmHWM: the most resident memory the process ever had."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def admin_agent(self) -> Agent:
        if self.admin_port is not None:
            return Agent(reactor)
        return Agent.usingEndpointFactory(reactor, _UNIXEndpointFactory(self.admin_socket))

    def admin_url(self, path: str) -> bytes:
        """The URL of an admin path for L{admin_agent}."""
        if self.admin_port is not None:
            return f"http://127.0.0.1:{self.admin_port}{path}".encode()
        return f"http://admin{path}".encode()

    def wait_ready(self, seconds: float = 30.0) -> Deferred[Any]:
        """Fires once /readyz answers 200; fails at once if the process exits."""

        @inlineCallbacks
        def readyz() -> Any:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited early ({self.process.returncode})")
            if self.admin_port is None and not os.path.exists(self.admin_socket):
                return "no admin socket yet"
            response = yield self.admin_agent().request(b"GET", self.admin_url("/readyz"))
            yield readBody(response)
            return response.code

        def with_log(failure: Failure) -> Failure:
            failure.trap(AssertionError)
            raise AssertionError(f"{failure.value}; its log:\n{self.log()}")

        return eventually(
            readyz,
            "the gateway answers 200 on /readyz",
            seconds,
            expect=200,
            ignoring=(ConnectError, ResponseFailed, ResponseNeverReceived, OSError),
            interval=0.1,
        ).addErrback(with_log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def free_tcp_port() -> int:
    """A loopback port free right now, for programs that cannot report the port they bound."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tenant_source(directory: str, tenant: dict[str, object], services: dict[str, list[int]]) -> str:
    """
    Creates C{directory} as a C{dir:} source holding one tenant, namespace
    C{team} (allowed to claim t.example), whose Services map to local ports;
    returns its absolute path.
    """
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    objects = tenant_objects("team", dump(tenant), services)
    with open(os.path.join(directory, "team.yaml"), "w") as f:
        f.write(dump({"kind": "List", "items": objects}))
    return directory

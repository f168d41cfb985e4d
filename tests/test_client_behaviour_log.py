"""
Nothing a client does puts a traceback in the gateway's log.  A real
``twistd tenantgw`` process takes a few hundred requests from clients that
behave badly in every ordinary way (leave mid-request, mid-body, mid-response,
send garbage, reset the connection), mixed with good ones, and its log must
then hold no "Unhandled Error" and no "Traceback".
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.process_support import GatewayProcess, tenant_source
from tests.support import Upstream

HOST = b"Host: t.example\r\n"


def _connect(path: str) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(path)
    return client


def _reset(client: socket.socket) -> None:
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def _misbehave(path: str, rounds: int) -> int:
    """Returns how many good requests were answered 200."""
    good = 0
    for i in range(rounds):
        kind = i % 6
        client = _connect(path)
        try:
            if kind == 0:  # a good request, read to the end
                client.sendall(b"GET /ok HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
                reply = b""
                while chunk := client.recv(65536):
                    reply += chunk
                good += reply.startswith(b"HTTP/1.1 200")
                client.close()
            elif kind == 1:  # leaves right after sending the request
                client.sendall(b"GET /ok HTTP/1.1\r\n" + HOST + b"\r\n")
                _reset(client)
            elif kind == 2:  # leaves half-way through the head
                client.sendall(b"GET /ok HTTP/1.1\r\nHo")
                _reset(client)
            elif kind == 3:  # leaves mid-body
                client.sendall(
                    b"POST /ok HTTP/1.1\r\n" + HOST + b"Content-Length: 100000\r\n\r\n" + b"x" * 500
                )
                _reset(client)
            elif kind == 4:  # garbage: a TLS ClientHello on the plain port
                client.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
                client.recv(1024)
                client.close()
            else:  # pipelines two and leaves before the second answer
                client.sendall((b"GET /ok HTTP/1.1\r\n" + HOST + b"\r\n") * 2)
                client.recv(10)
                _reset(client)
        except OSError:
            client.close()
    return good


class NoTracebacksFromClientsTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_bad_clients_leave_no_traceback_in_the_log(self) -> Any:
        upstream = Upstream("web")
        self.addCleanup(upstream.stop)
        tenant = {
            "hosts": ["t.example"],
            "routes": [{"backends": [{"service": "web", "port": 80}]}],
        }
        source = tenant_source(self.mktemp(), tenant, {"web": [upstream.number]})
        workdir = self.mktemp()
        os.makedirs(workdir)
        gateway = GatewayProcess(workdir, source)
        self.addCleanup(gateway.stop)
        yield gateway.wait_ready()
        results = yield deferToThread(
            lambda: [_misbehave(gateway.http_socket, 60) for _ in range(4)]
        )
        self.assertEqual(sum(results), 40, "every good request was answered")
        gateway.stop()
        log = gateway.log()
        self.assertIn("tenant team: Accepted", log, "the log was written")
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled Error", log)
        self.assertNotIn("Request.finish called", log)

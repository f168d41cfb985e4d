"""
Bodies stream through the gateway with backpressure: a 1 GiB upload and a
1 GiB download pass through a real ``twistd tenantgw`` process whose peak
memory stays far below the size of the body.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.http import _ChunkedTransferDecoder
from zope.interface import implementer

from tests.fronts import FrontMixin
from tests.process_support import GatewayProcess
from tests.support import dump, tenant_objects

GIB = 1024 * 1024 * 1024
CHUNK = b"\0" * (256 * 1024)
# Python, Twisted, the compiled snapshot: ~40 MB.  The limit leaves room for
# socket buffers but is a small fraction of the 1 GiB that passes through.
PEAK_RSS_LIMIT = 160 * 1024 * 1024


@implementer(IPushProducer)
class _ZeroSource:
    """Writes C{remaining} zero bytes, pausing whenever the transport is full."""

    def __init__(self, transport: Any, remaining: int, done: Any) -> None:
        self.transport = transport
        self.remaining = remaining
        self.paused = False
        self.done = done

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.remaining > 0:
            chunk = CHUNK if self.remaining >= len(CHUNK) else CHUNK[: self.remaining]
            self.remaining -= len(chunk)
            self.transport.write(chunk)
        if self.remaining == 0 and not self.paused:
            self.transport.unregisterProducer()
            self.done()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.remaining = 0


class CountingUpstream(Protocol):
    """
    A raw HTTP/1.1 upstream: C{GET /download} answers 1 GiB of zeros with
    backpressure; C{PUT /upload} counts the (chunked or sized) body and
    answers the count.  Raw, because twisted.web would spool the upload.
    """

    uploads: list[int]

    def connectionMade(self) -> None:
        self.buffer = b""
        self.counted = 0
        self.decoder: Any = None
        self.remaining = -1

    def dataReceived(self, data: bytes) -> None:
        if self.decoder is None and self.remaining < 0:
            self.buffer += data
            if b"\r\n\r\n" not in self.buffer:
                return
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            if lines[0].startswith(b"GET /download"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIB)
                source = _ZeroSource(self.transport, GIB, lambda: None)
                self.transport.registerProducer(source, True)
                source.resumeProducing()
                return
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(b":") for line in lines[1:])
            }
            if headers.get(b"transfer-encoding") == b"chunked":
                self.decoder = _ChunkedTransferDecoder(self._count, self._finished)
                if rest:
                    self.decoder.dataReceived(rest)
            else:
                self.remaining = int(headers.get(b"content-length", b"0"))
                self._count_sized(rest)
            return
        if self.decoder is not None:
            self.decoder.dataReceived(data)
        else:
            self._count_sized(data)

    def _count(self, data: bytes) -> None:
        self.counted += len(data)

    def _count_sized(self, data: bytes) -> None:
        self.counted += len(data)
        self.remaining -= len(data)
        if self.remaining <= 0:
            self._finished(b"")

    def _finished(self, rest: bytes) -> None:
        body = b"%d" % self.counted
        self.factory.uploads.append(self.counted)  # type: ignore[attr-defined]
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class StreamingTests(FrontMixin, TestCase):
    timeout = 300

    @inlineCallbacks
    def setUp(self) -> Any:
        if shutil.which("curl") is None:
            raise AssertionError("curl is required by this test (installed by .ci/run)")
        factory = Factory.forProtocol(CountingUpstream)
        factory.uploads = []  # type: ignore[attr-defined]
        self.factory = factory
        self.upstream = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.upstream.stopListening)
        workdir = self.mktemp()
        source = os.path.join(workdir, "tenants")
        os.makedirs(source)
        objects = tenant_objects(
            "big",
            dump(
                {
                    "hosts": ["t.example"],
                    "routes": [{"name": "all", "backends": [{"service": "web", "port": 80}]}],
                }
            ),
            {"web": [self.upstream.getHost().port]},
        )
        with open(os.path.join(source, "tenant.yaml"), "w") as f:
            f.write(dump({"kind": "List", "items": objects}))
        self.gateway = GatewayProcess(workdir, source, extra=self.front_args())
        self.addCleanup(self.gateway.stop)
        yield self.gateway.wait_ready()

    def curl(self, *args: str) -> Deferred[Any]:
        return getProcessOutputAndValue(
            "curl",
            [
                "--silent",
                "--show-error",
                "--unix-socket",
                self.gateway.http_socket,
                "-H",
                "Host: t.example",
                *args,
            ],
            env=os.environ,
        )

    @inlineCallbacks
    def test_one_gib_download_streams_with_bounded_memory(self) -> Any:
        out, err, code = yield self.curl(
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code} %{size_download}",
            "http://t.example/download",
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(out.decode(), f"200 {GIB}")
        self.assertLess(self.gateway.peak_rss_bytes(), PEAK_RSS_LIMIT)

    @inlineCallbacks
    def test_one_gib_chunked_upload_streams_with_bounded_memory(self) -> Any:
        # curl sends a body of unknown length from stdin chunked; the
        # gateway re-frames it chunked for the upstream without holding it.
        out, err, code = yield getProcessOutputAndValue(
            "/bin/sh",
            [
                "-c",
                f"head -c {GIB} /dev/zero | curl --silent --show-error --unix-socket"
                f" '{self.gateway.http_socket}' -H 'Host: t.example' -T -"
                " http://t.example/upload",
            ],
            env=os.environ,
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(out, b"%d" % GIB)
        self.assertEqual(self.factory.uploads, [GIB])  # type: ignore[attr-defined]
        self.assertLess(self.gateway.peak_rss_bytes(), PEAK_RSS_LIMIT)


# Default front only: a whole gateway process per test; the twisted.web front's
# streaming and framing are covered by the modules that run on both fronts.

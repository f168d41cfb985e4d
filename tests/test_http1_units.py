"""
The HTTP/1.1 wire layer's rules by example, and the front agreeing with it.

Each refused shape is judged twice: by the pure parser, and by the channel
(the head in one read, then byte by byte), and the statuses must be the
same, since both are meant to apply one set of rules.  The channel's
refusals and the router's answers must also say the same for one status.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

import tenantgw.http1
from tenantgw.dataplane import responses
from tenantgw.dataplane.channel import GatewayChannel
from tenantgw.http1.chunked import ChunkedDecoder, ChunkedError, encode_chunk, encode_chunked
from tenantgw.http1.fields import HOP_BY_HOP, UNDERSCORES_ALLOW, UNDERSCORES_REJECT
from tenantgw.http1.head import (
    CHUNKED,
    HeadError,
    head_end,
    parse_request_head,
)
from tenantgw.http1.request_id import new_request_id, valid_request_id
from tenantgw.http1.responses import FIXED, fixed_body, refusal, serialize_response_head
from tenantgw.wire import fields as wire_fields
from tests.fronts import FrontMixin, both_fronts
from tests.support import build_gateway, one_tenant_snapshot

HOST = b"Host: t.example\r\n"
GET = b"GET / HTTP/1.1\r\n"

REFUSED = {
    "414 request line": (b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414),
    "431 field count": (GET + HOST + b"X: 1\r\n" * 100 + b"\r\n", 431),
    "431 section bytes": (GET + HOST + b"X: " + b"a" * 16400 + b"\r\n\r\n", 431),
    "obs-fold": (GET + HOST + b"X: a\r\n b\r\n\r\n", 400),
    "bare LF": (GET + HOST + b"X: a\nY: b\r\n\r\n", 400),
    "bare CR": (GET + HOST + b"X: a\rb\r\n\r\n", 400),
    "NUL in value": (GET + HOST + b"X: a\x00\r\n\r\n", 400),
    "DEL in value": (GET + HOST + b"X: a\x7f\r\n\r\n", 400),
    "space before colon": (GET + b"Host : t.example\r\n\r\n", 400),
    "non-token name": (GET + HOST + b"X(y): 1\r\n\r\n", 400),
    "no colon": (GET + HOST + b"X\r\n\r\n", 400),
    "empty name": (GET + HOST + b": 1\r\n\r\n", 400),
    "two CL equal": (b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 1\r\n" * 2 + b"\r\n", 400),
    "CL list": (b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 1, 1\r\n\r\n", 400),
    "CL sign": (b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: +1\r\n\r\n", 400),
    "CL 2**63": (b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: %d\r\n\r\n" % 2**63, 400),
    "CL 5000 digits": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n",
        400,
    ),
    "CL then TE": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    "TE then CL": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        400,
    ),
    "TE identity": (b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: identity\r\n\r\n", 400),
    "TE gzip, chunked": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        400,
    ),
    "TE twice": (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n" * 2 + b"\r\n",
        400,
    ),
    "TE in HTTP/1.0": (b"POST / HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n", 400),
    "no Host": (GET + b"\r\n", 400),
    "two Hosts": (GET + HOST + b"host: u.example\r\n\r\n", 400),
    "HTTP/1.2": (b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", 400),
    "tab separator": (b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "obs-text target": (b"GET /\xe9 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "underscore name, reject": (GET + HOST + b"X_Y: 1\r\n\r\n", 400),
}


class _Front:
    """A gateway channel on a memory transport, refusing underscored names."""

    def __init__(self) -> None:
        reactor = MemoryReactorClock()
        _, site = build_gateway(reactor, one_tenant_snapshot(9999))
        site.underscores = UNDERSCORES_REJECT
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        self.channel: GatewayChannel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def status(self) -> int:
        return int(self.transport.value().split(b" ", 2)[1])


class ParserAndChannelAgreeTests(FrontMixin, SynchronousTestCase):
    def test_each_refused_shape_has_one_status_everywhere(self) -> None:
        for name, (data, status) in REFUSED.items():
            with self.assertRaises(HeadError, msg=name) as caught:
                parse_request_head(data, UNDERSCORES_REJECT)
            self.assertEqual(caught.exception.status, status, name)
            whole = _Front()
            whole.channel.dataReceived(data)
            self.assertEqual(whole.status(), status, name)
            pieces = _Front()
            for i in range(0, len(data), 7):  # bytewise would take long on 16 KiB
                pieces.channel.dataReceived(data[i : i + 7])
            self.assertEqual(pieces.status(), status, name)

    def test_refusals_honour_accept_json(self) -> None:
        """The channel used to answer text whatever the client asked for."""
        front = _Front()
        front.channel.dataReceived(GET + HOST + b"Accept: application/json\r\n" + b"X: 1\r\n" * 99)
        response = front.transport.value()
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nContent-Type: application/json\r\n", head)
        self.assertEqual(
            json.loads(body), {"error": "request_header_fields_too_large", "status": 431}
        )

    def test_channel_refusal_and_router_answer_say_the_same(self) -> None:
        """One table: the 414 body used to be "request line too long" here, "uri too long" there."""
        for status in (400, 408, 414, 431):
            for as_json in (False, True):
                written = refusal(status, new_request_id(), as_json)
                head, _, body = written.partition(b"\r\n\r\n")
                content_type, expected = fixed_body(status, as_json)
                self.assertEqual(body, expected)
                self.assertIn(b"Content-Type: " + content_type + b"\r\n", head)
                self.assertTrue(
                    head.startswith(b"HTTP/1.1 %d %s\r\n" % (status, FIXED[status].reason))
                )
        self.assertEqual(FIXED[414].text, b"request line too long\n")
        # The router's answers read the same table.
        self.assertIs(responses.fixed_body, fixed_body)


class AcceptedShapesTests(FrontMixin, SynchronousTestCase):
    def test_absolute_form_is_the_router_s_to_judge(self) -> None:
        head = parse_request_head(b"GET http://t.example/x HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertEqual(head.target, b"http://t.example/x")

    def test_http10_may_omit_host(self) -> None:
        self.assertEqual(parse_request_head(b"GET / HTTP/1.0\r\n\r\n").fields, ())

    def test_framing(self) -> None:
        post = b"POST / HTTP/1.1\r\n" + HOST
        self.assertEqual(parse_request_head(post + b"Content-Length: 007\r\n\r\n").length, 7)
        self.assertEqual(
            parse_request_head(post + b"transfer-encoding: Chunked\r\n\r\n").length, CHUNKED
        )
        self.assertEqual(parse_request_head(GET + HOST + b"\r\n").length, 0)

    def test_values_lose_only_surrounding_whitespace(self) -> None:
        head = parse_request_head(GET + HOST + b"X:\t a \t b\t \r\nY:\r\n\r\n")
        self.assertEqual(head.fields[1:], ((b"X", b"a \t b"), (b"Y", b"")))

    def test_limits_are_inclusive(self) -> None:
        line = b"GET /" + b"a" * (8192 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
        self.assertEqual(len(line), 8192)
        parse_request_head(line + b"\r\n" + HOST + b"X: 1\r\n" * 99 + b"\r\n")

    def test_underscore_policies(self) -> None:
        data = GET + HOST + b"X_Y: 1\r\n\r\n"
        self.assertEqual(parse_request_head(data).fields, ((b"Host", b"t.example"),))
        self.assertEqual(len(parse_request_head(data, UNDERSCORES_ALLOW).fields), 2)


class HeadEndTests(SynchronousTestCase):
    def test_end_and_waiting(self) -> None:
        data = GET + HOST + b"\r\n"
        self.assertEqual(head_end(data + b"GET"), len(data))
        self.assertEqual(head_end(GET + b"Host: t.ex"), -1)

    def test_refuses_before_the_end_arrives(self) -> None:
        for partial, status in (
            (b"GET /" + b"a" * 8200, 414),
            (GET + b"X: " + b"a" * 16400, 431),
            (GET + b"X: a\n", 400),
            (b"GET\x00 / HTTP/1.1\r\n", 400),
        ):
            with self.assertRaises(HeadError) as caught:
                head_end(partial)
            self.assertEqual(caught.exception.status, status)


class ChunkedTests(SynchronousTestCase):
    def test_strict_corners(self) -> None:
        for body in (
            b"1\nx\r\n0\r\n\r\n",  # bare LF
            b"11111111111111111\r\n",  # 17 digits
            b"8000000000000000\r\n",  # 2**63
            b"1;a b\r\nx\r\n0\r\n\r\n",  # junk extension
            b"1\r\nxy\r\n",  # longer than its size
            b"0\r\nnot a field\r\n\r\n",  # data after the last chunk
            b"0\r\nX: a\nb\r\n\r\n",
        ):
            with self.assertRaises(ChunkedError, msg=body):
                ChunkedDecoder().feed(body)

    def test_quoted_extension_and_trailers(self) -> None:
        decoder = ChunkedDecoder()
        out = decoder.feed(b'3;name="a \\" b"\r\nabc\r\n0\r\nX-T: 1 \r\n\r\nNEXT')
        self.assertEqual(
            (out, decoder.trailers, decoder.rest), ([b"abc"], [(b"X-T", b"1")], b"NEXT")
        )

    def test_encoder(self) -> None:
        self.assertEqual(encode_chunk(b""), b"")
        self.assertEqual(
            encode_chunked([b"ab", b""], [(b"X", b"1")]), b"2\r\nab\r\n0\r\nX: 1\r\n\r\n"
        )
        with self.assertRaises(ValueError):
            encode_chunked([], [(b"X", b"1\r\nY: 2")])


class ResponseHeadTests(SynchronousTestCase):
    def test_serialized(self) -> None:
        self.assertEqual(
            serialize_response_head(204, [(b"X-A", b"1")]),
            b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        )

    def test_no_field_can_be_split_in_two(self) -> None:
        for fields in ([(b"X", b"a\r\nSet-Cookie: x")], [(b"X Y", b"1")], [(b"X", b"a\n")]):
            with self.assertRaises(ValueError):
                serialize_response_head(200, fields)
        with self.assertRaises(ValueError):
            serialize_response_head(200, [], reason=b"OK\r\nX: 1")

    def test_request_ids(self) -> None:
        ids = {new_request_id() for _ in range(100)}
        self.assertEqual(len(ids), 100)
        for value in ids:
            self.assertRegex(value, re.compile(rb"\A[0-9a-f]{32}\Z"))
            self.assertTrue(valid_request_id(value))
        self.assertFalse(valid_request_id(b"short"))
        self.assertFalse(valid_request_id(b"has space in it"))


class LayerTests(SynchronousTestCase):
    def test_one_hop_by_hop_table(self) -> None:
        self.assertIs(wire_fields.HOP_BY_HOP, HOP_BY_HOP)

    def test_pure(self) -> None:
        """No Twisted and nothing of the gateway's outside http1: bytes in, values out."""
        package = Path(tenantgw.http1.__file__).parent
        problems = []
        for path in sorted(package.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                modules = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    modules = [node.module]
                for module in modules:
                    if module.startswith("twisted") or (
                        module.startswith("tenantgw") and not module.startswith("tenantgw.http1")
                    ):
                        problems.append(f"{path.name} imports {module}")
        self.assertEqual(problems, [])


both_fronts(globals())

"""
Parser hardening of the client-facing connection (L{GatewayChannel}).

Contract, section 6: a malformed request or a smuggling shape gets a 4xx and
the connection closes; the header section over its limit is a 431, the
request line over its limit a 414; nothing echoes request data; every
response carries X-Request-Id.  On top of that, for every refusal here: the
body is a fixed text, the response says C{Connection: close}, the server
actually closes, nothing after the refused request is processed, and the
upstream never hears of the request.

Limits: request line (without CRLF) at most 8192 bytes; header section
(field lines with their CRLFs) at most 16384 bytes; at most 100 field lines;
the header phase at most C{header_deadline} seconds.

Most tests drive the channel in memory (C{StringTransport}, and a
C{MemoryReactorClock} whose recorded C{connectTCP} calls show whether an
upstream was contacted); a few run over real sockets.
"""

from __future__ import annotations

import re

from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tenantgw.dataplane.channel import (
    MAX_HEADER_BYTES,
    MAX_HEADER_COUNT,
    MAX_REQUEST_LINE_BYTES,
)
from tests.fronts import FrontMixin, both_fronts
from tests.support import (
    RecordingUpstream,
    build_gateway,
    complete_memory_connection,
    one_tenant_snapshot,
)

UPSTREAM_PORT = 9099
HOST = b"Host: t.example\r\n"
DEADLINE = 10.0

# The fixed bodies the contract's statuses answer with (never request data).
FIXED_BODIES = {
    400: b"bad request\n",
    404: b"not found\n",
    408: b"request timeout\n",
    414: b"request line too long\n",
    431: b"request header fields too large\n",
}
_REQUEST_ID = re.compile(rb"\A[0-9a-f]{32}\Z")

Response = tuple[int, dict[bytes, list[bytes]], bytes]


def parse_responses(data: bytes) -> list[Response]:
    """Splits C{data} into (status, headers, body) responses framed by Content-Length."""
    responses: list[Response] = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"unterminated response head: {head!r}")
        lines = head.split(b"\r\n")
        version, status, _reason = lines[0].split(b" ", 2)
        if version != b"HTTP/1.1":
            raise AssertionError(f"bad status line {lines[0]!r}")
        headers: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(headers[b"content-length"][0])
        responses.append((int(status), headers, data[:length]))
        data = data[length:]
    return responses


def dechunk(body: bytes) -> bytes:
    """Decodes a chunked body written by the gateway (no extensions, no trailers)."""
    data = b""
    while True:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        if not length:
            if body != b"\r\n":
                raise AssertionError(f"bad end of chunked body: {body!r}")
            return data
        data, body = data + body[:length], body[length + 2 :]


def request_line_of(length: int, method: bytes = b"GET") -> bytes:
    """A valid request line of exactly C{length} bytes (without its CRLF)."""
    fixed = len(method) + len(b" / HTTP/1.1")
    return method + b" /" + b"a" * (length - fixed) + b" HTTP/1.1"


def header_section(size: int, count: int) -> bytes:
    """
    C{count} field lines (Host first) totalling exactly C{size} bytes with
    their CRLFs, not counting the empty line that ends the section.
    """
    lines = [HOST] + [b"X-Pad-%03d: a\r\n" % i for i in range(count - 2)]
    room = size - sum(len(line) for line in lines) - len(b"X-Fill: \r\n")
    assert room >= 0, "size too small for count"
    lines.append(b"X-Fill: " + b"f" * room + b"\r\n")
    section = b"".join(lines)
    assert len(section) == size and section.count(b"\r\n") == count
    return section


class _MemoryHarness:
    """A gateway for tenant t.example on a MemoryReactorClock, one client connection."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.gateway, self.site = build_gateway(
            self.reactor, one_tenant_snapshot(UPSTREAM_PORT), header_deadline=DEADLINE
        )
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40001),
        )
        self.channel = self.site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def send(self, *parts: bytes) -> None:
        for part in parts:
            self.channel.dataReceived(part)

    def assertUpstreamUntouched(self) -> None:
        self.assertEqual(self.reactor.tcpClients, [], "the upstream was contacted")

    def assertFixedResponse(self, response: Response, status: int) -> None:
        code, headers, body = response
        self.assertEqual(code, status)
        self.assertEqual(body, FIXED_BODIES[status])
        self.assertEqual(headers[b"content-length"], [b"%d" % len(body)])
        self.assertEqual(headers[b"content-type"], [b"text/plain; charset=utf-8"])
        self.assertEqual(len(headers[b"x-request-id"]), 1)
        self.assertRegex(headers[b"x-request-id"][0], _REQUEST_ID)
        # Nothing else: no header could carry request data back.
        self.assertLessEqual(
            set(headers),
            {b"content-type", b"content-length", b"connection", b"x-request-id", b"cache-control"},
        )

    def assertRefused(self, status: int) -> None:
        """Exactly one fixed refusal, Connection: close, closed, upstream untouched."""
        responses = parse_responses(self.transport.value())
        self.assertEqual(len(responses), 1, responses)
        self.assertFixedResponse(responses[0], status)
        self.assertEqual(responses[0][1][b"connection"], [b"close"])
        self.assertTrue(self.transport.disconnecting, "the connection was left open")
        self.assertUpstreamUntouched()
        # Whatever else the client sends is ignored.
        self.transport.clear()
        self.send(b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertEqual(self.transport.value(), b"")
        self.assertUpstreamUntouched()

    def assertAccepted(self) -> StringTransport:
        """
        The request passed the parser and went to the route's upstream;
        returns the in-memory upstream connection, with what it was sent.
        """
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        host, port = self.reactor.tcpClients[0][:2]
        self.assertEqual((host, port), ("127.0.0.1", UPSTREAM_PORT))
        return complete_memory_connection(self.reactor)

    def refused(self, status: int, *parts: bytes) -> None:
        self.send(*parts)
        self.assertRefused(status)


def _post(*headers: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\n" + HOST + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


CHUNKED = _post(b"Transfer-Encoding: chunked")


class RequestLineTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    """Malformed request lines are a 400."""

    def test_missing_version(self) -> None:
        self.refused(400, b"GET /\r\n" + HOST + b"\r\n")

    def test_double_space(self) -> None:
        self.refused(400, b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_leading_space(self) -> None:
        self.refused(400, b" GET / HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_trailing_space(self) -> None:
        self.refused(400, b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n")

    def test_tab_separator(self) -> None:
        self.refused(400, b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_unknown_version(self) -> None:
        self.refused(400, b"GET / HTTP/2.0\r\n" + HOST + b"\r\n")

    def test_lowercase_version(self) -> None:
        self.refused(400, b"GET / http/1.1\r\n" + HOST + b"\r\n")

    def test_invalid_method(self) -> None:
        self.refused(400, b"G(T / HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_del_in_target(self) -> None:
        self.refused(400, b"GET /a\x7fb HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_non_ascii_in_target(self) -> None:
        # twisted.web alone lets 0x7F-0xB0 through (a decimal/octal slip).
        self.refused(400, b"GET /a\x80b HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_bare_cr_in_request_line(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\rX\r\n" + HOST + b"\r\n")

    def test_nul_in_request_line(self) -> None:
        self.refused(400, b"GET /\x00 HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_two_empty_lines_before_request(self) -> None:
        # One stray CRLF before a request is tolerated (RFC 9112 2.2); two is junk.
        self.refused(400, b"\r\n\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n")


class HeaderFieldTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    """Malformed field lines are a 400."""

    def test_missing_host(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")

    def test_missing_host_absolute_form(self) -> None:
        self.refused(400, b"GET http://t.example/ HTTP/1.1\r\n\r\n")

    def test_two_host_headers(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"Host: other.example\r\n\r\n")

    def test_two_identical_host_headers(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + HOST + b"\r\n")

    def test_host_list(self) -> None:
        # One Host field holding two names: refused by the router, same shape.
        self.refused(400, b"GET / HTTP/1.1\r\nHost: t.example, other.example\r\n\r\n")

    def test_space_before_colon(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\nHost : t.example\r\n\r\n")

    def test_invalid_name_character(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"X(a): b\r\n\r\n")

    def test_non_ascii_name(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"X-\xc3\xa9: b\r\n\r\n")

    def test_empty_name(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b": b\r\n\r\n")

    def test_no_colon(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"NoColonHere\r\n\r\n")

    def test_nul_in_value(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n")

    def test_cr_in_value(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\rb\r\n\r\n")

    def test_obs_fold(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n")

    def test_obs_fold_tab(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n\tb\r\n\r\n")

    def test_obs_fold_first_field_line(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n Host: t.example\r\n\r\n")

    def test_bare_lf_everywhere(self) -> None:
        # No CRLF ever arrives: refused at once, not left to the deadline.
        self.refused(400, b"GET / HTTP/1.1\nHost: t.example\n\n")

    def test_bare_lf_between_field_lines(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\nHost: t.example\nX-Smuggled: 1\r\n\r\n")

    def test_bare_lf_ending_header_section(self) -> None:
        self.refused(400, b"GET / HTTP/1.1\r\n" + HOST + b"\n")


class ContentLengthTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    def test_duplicate_identical(self) -> None:
        self.refused(400, _post(b"Content-Length: 3", b"Content-Length: 3") + b"abc")

    def test_duplicate_conflicting(self) -> None:
        self.refused(400, _post(b"Content-Length: 3", b"Content-Length: 4") + b"abcd")

    def test_list_value(self) -> None:
        self.refused(400, _post(b"Content-Length: 3, 3") + b"abc")

    def test_plus_sign(self) -> None:
        self.refused(400, _post(b"Content-Length: +3") + b"abc")

    def test_minus_sign(self) -> None:
        self.refused(400, _post(b"Content-Length: -3") + b"abc")

    def test_hex(self) -> None:
        self.refused(400, _post(b"Content-Length: 0x3") + b"abc")

    def test_empty(self) -> None:
        self.refused(400, _post(b"Content-Length:") + b"abc")

    def test_overflow(self) -> None:
        self.refused(400, _post(b"Content-Length: 18446744073709551619") + b"abc")

    def test_thousands_of_digits(self) -> None:
        # More digits than int() will parse: still a plain 400.
        self.refused(400, _post(b"Content-Length: " + b"0" * 4999 + b"3") + b"abc")

    def test_with_transfer_encoding(self) -> None:
        self.refused(
            400,
            _post(b"Content-Length: 4", b"Transfer-Encoding: chunked") + b"1\r\na\r\n0\r\n\r\n",
        )

    def test_after_transfer_encoding(self) -> None:
        self.refused(
            400,
            _post(b"Transfer-Encoding: chunked", b"Content-Length: 4") + b"1\r\na\r\n0\r\n\r\n",
        )


class TransferEncodingTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    def test_identity(self) -> None:
        self.refused(400, _post(b"Transfer-Encoding: identity", b"Content-Length: 3") + b"abc")

    def test_gzip_then_chunked(self) -> None:
        self.refused(400, _post(b"Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n")

    def test_chunked_listed_twice(self) -> None:
        self.refused(400, _post(b"Transfer-Encoding: chunked, chunked") + b"0\r\n\r\n")

    def test_two_fields(self) -> None:
        self.refused(
            400,
            _post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked") + b"0\r\n\r\n",
        )

    def test_empty(self) -> None:
        self.refused(400, _post(b"Transfer-Encoding:") + b"0\r\n\r\n")

    def test_vertical_tab(self) -> None:
        self.refused(400, _post(b"Transfer-Encoding: \x0bchunked") + b"0\r\n\r\n")

    def test_http10(self) -> None:
        # RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing.
        self.refused(
            400,
            b"POST / HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )


class ChunkedBodyTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    """Chunked framing errors; the body arrives with the headers, so no upstream is tried."""

    def test_bare_lf_chunk_size_line(self) -> None:
        self.refused(400, CHUNKED + b"3\nabc\r\n0\r\n\r\n")

    def test_bare_lf_chunk_size_line_unterminated(self) -> None:
        # Refused at once rather than waiting for a CRLF.
        self.refused(400, CHUNKED + b"3\n")

    def test_bare_lf_after_chunk_data(self) -> None:
        self.refused(400, CHUNKED + b"3\r\nabc\n0\r\n\r\n")

    def test_bare_lf_after_chunk_data_unterminated(self) -> None:
        self.refused(400, CHUNKED + b"3\r\nabc\n")

    def test_bare_lf_last_chunk(self) -> None:
        self.refused(400, CHUNKED + b"3\r\nabc\r\n0\n\r\n")

    def test_bare_lf_ending_trailer_section(self) -> None:
        self.refused(400, CHUNKED + b"3\r\nabc\r\n0\r\n\n")

    def test_size_not_hex(self) -> None:
        self.refused(400, CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n")

    def test_size_negative(self) -> None:
        self.refused(400, CHUNKED + b"-3\r\nabc\r\n0\r\n\r\n")

    def test_size_with_0x(self) -> None:
        self.refused(400, CHUNKED + b"0x3\r\nabc\r\n0\r\n\r\n")

    def test_size_missing(self) -> None:
        self.refused(400, CHUNKED + b";a=b\r\nabc\r\n0\r\n\r\n")

    def test_size_trailing_space(self) -> None:
        self.refused(400, CHUNKED + b"3 \r\nabc\r\n0\r\n\r\n")

    def test_size_overflow_digits(self) -> None:
        # 2**64: what a 64-bit parser would wrap to 0.
        self.refused(400, CHUNKED + b"10000000000000000\r\nabc\r\n0\r\n\r\n")

    def test_size_overflow_value(self) -> None:
        self.refused(400, CHUNKED + b"ffffffffffffffff\r\nabc\r\n")

    def test_extension_junk_words(self) -> None:
        self.refused(400, CHUNKED + b"3;foo bar\r\nabc\r\n0\r\n\r\n")

    def test_extension_without_name(self) -> None:
        self.refused(400, CHUNKED + b"3;=x\r\nabc\r\n0\r\n\r\n")

    def test_extension_unterminated_quote(self) -> None:
        self.refused(400, CHUNKED + b'3;a="b\r\nabc\r\n0\r\n\r\n')

    def test_extension_control_character(self) -> None:
        self.refused(400, CHUNKED + b"3;a=\x01\r\nabc\r\n0\r\n\r\n")

    def test_chunk_longer_than_size(self) -> None:
        self.refused(400, CHUNKED + b"3\r\nabcd\r\n0\r\n\r\n")

    def test_data_after_last_chunk(self) -> None:
        # Bytes after the last chunk that are not a field line: twisted.web
        # alone swallows them as a "trailer".
        self.refused(400, CHUNKED + b"3\r\nabc\r\n0\r\nGET /admin HTTP/1.1\r\n\r\n")

    def test_bytes_after_body_are_the_next_request(self) -> None:
        """
        After the CRLF that ends a chunked body, the next bytes are the next
        request and get the same parser: here the first request (for an
        unknown host, answered by the gateway) gets its 404, the junk its 400.
        """
        self.send(
            b"POST / HTTP/1.1\r\nHost: unknown.example\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\nGARBAGE\r\n\r\n"
        )
        responses = parse_responses(self.transport.value())
        self.assertEqual([r[0] for r in responses], [404, 400])
        self.assertFixedResponse(responses[0], 404)
        self.assertFixedResponse(responses[1], 400)
        self.assertEqual(responses[1][1][b"connection"], [b"close"])
        self.assertTrue(self.transport.disconnecting)
        self.assertUpstreamUntouched()


class PipeliningTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    def test_request_after_refusal_same_read(self) -> None:
        self.refused(
            400,
            b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\n" + HOST + b"\r\n",
        )

    def test_request_after_refusal_one_read(self) -> None:
        self.refused(
            400,
            b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n"
            b"GET / HTTP/1.1\r\n" + HOST + b"\r\n",
        )

    def test_cl_te_smuggle(self) -> None:
        self.refused(
            400,
            _post(b"Content-Length: 6", b"Transfer-Encoding: chunked")
            + b"0\r\n\r\nGET /admin HTTP/1.1\r\n"
            + HOST
            + b"\r\n",
        )

    def test_te_cl_smuggle(self) -> None:
        self.refused(
            400,
            _post(b"Transfer-Encoding: chunked", b"Content-Length: 3")
            + b"8\r\nSMUGGLED\r\n0\r\n\r\n",
        )

    def test_request_after_header_refusal(self) -> None:
        self.refused(
            431,
            b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
            b"GET / HTTP/1.1\r\n" + HOST + b"\r\n",
        )


class SizeLimitTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    """414 and 431, at their exact boundaries."""

    def test_request_line_at_limit(self) -> None:
        self.send(request_line_of(MAX_REQUEST_LINE_BYTES) + b"\r\n" + HOST + b"\r\n")
        self.assertAccepted()

    def test_request_line_just_under_limit(self) -> None:
        self.send(request_line_of(8000) + b"\r\n" + HOST + b"\r\n")
        self.assertAccepted()

    def test_request_line_over_limit(self) -> None:
        self.refused(414, request_line_of(MAX_REQUEST_LINE_BYTES + 1) + b"\r\n" + HOST + b"\r\n")

    def test_request_line_over_limit_unterminated(self) -> None:
        # Refused as soon as it is over, without waiting for the CRLF.
        self.refused(414, request_line_of(MAX_REQUEST_LINE_BYTES + 2)[: MAX_REQUEST_LINE_BYTES + 1])

    def test_request_line_at_limit_unterminated(self) -> None:
        # A request line exactly at the limit, its CRLF still to come (half
        # of it, even), is not refused early.
        line = request_line_of(MAX_REQUEST_LINE_BYTES)
        self.send(line, b"\r")
        self.assertEqual(self.transport.value(), b"")
        self.send(b"\n" + HOST + b"\r\n")
        self.assertAccepted()

    def test_request_line_far_over_limit(self) -> None:
        self.refused(414, request_line_of(4 * MAX_HEADER_BYTES) + b"\r\n" + HOST + b"\r\n")

    def test_header_section_at_limit(self) -> None:
        self.send(b"GET / HTTP/1.1\r\n" + header_section(MAX_HEADER_BYTES, 2) + b"\r\n")
        self.assertAccepted()

    def test_header_section_just_under_limit(self) -> None:
        self.send(b"GET / HTTP/1.1\r\n" + header_section(16000, 20) + b"\r\n")
        self.assertAccepted()

    def test_header_section_over_limit(self) -> None:
        self.refused(431, b"GET / HTTP/1.1\r\n" + header_section(MAX_HEADER_BYTES + 1, 2) + b"\r\n")

    def test_header_section_over_limit_unterminated(self) -> None:
        # A field line that cannot fit is refused before its CRLF arrives.
        section = header_section(MAX_HEADER_BYTES + 1, 2)
        self.refused(431, b"GET / HTTP/1.1\r\n" + section[:-2])

    def test_one_huge_field_line(self) -> None:
        self.refused(431, b"GET / HTTP/1.1\r\n" + HOST + b"X-Big: " + b"b" * 40000)

    def test_request_line_does_not_count_against_headers(self) -> None:
        self.send(
            request_line_of(MAX_REQUEST_LINE_BYTES)
            + b"\r\n"
            + header_section(MAX_HEADER_BYTES, MAX_HEADER_COUNT)
            + b"\r\n"
        )
        self.assertAccepted()

    def test_exactly_max_headers(self) -> None:
        self.send(b"GET / HTTP/1.1\r\n" + header_section(2000, MAX_HEADER_COUNT) + b"\r\n")
        self.assertAccepted()

    def test_one_header_too_many(self) -> None:
        # twisted.web alone answers this one with a 400.
        self.refused(
            431, b"GET / HTTP/1.1\r\n" + header_section(2000, MAX_HEADER_COUNT + 1) + b"\r\n"
        )

    def test_many_headers_unterminated(self) -> None:
        # The 101st line is refused as it arrives, not at the end of the section.
        self.refused(431, b"GET / HTTP/1.1\r\n" + header_section(2000, MAX_HEADER_COUNT + 1))


class HeaderDeadlineTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    """Slowloris: the header phase has a total deadline, not an idle one."""

    def test_incomplete_headers(self) -> None:
        self.send(b"GET / HTTP/1.1\r\n" + HOST)
        self.reactor.advance(DEADLINE - 0.01)
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(0.01)
        self.assertRefused(408)

    def test_partial_request_line(self) -> None:
        self.send(b"GET /slo")
        self.reactor.advance(DEADLINE)
        self.assertRefused(408)

    def test_trickled_headers(self) -> None:
        """A byte a second keeps the idle timeout at bay, but not the deadline."""
        request = b"GET / HTTP/1.1\r\n" + HOST + b"X-Slow: " + b"s" * 100
        for i in range(int(DEADLINE)):
            self.send(request[i : i + 1])
            self.assertEqual(self.transport.value(), b"")
            self.reactor.advance(1)
        self.assertRefused(408)

    def test_complete_headers_stop_the_deadline(self) -> None:
        self.send(b"GET / HTTP/1.1\r\n", HOST, b"\r\n")
        self.reactor.advance(DEADLINE * 2)
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_slow_body_is_not_a_header_timeout(self) -> None:
        """The body has its own idle timeout (--body-timeout), longer here."""
        self.gateway.body_timeout = DEADLINE * 3
        self.send(CHUNKED + b"1\r\na\r\n")
        self.reactor.advance(DEADLINE * 2)
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_idle_keep_alive_then_slow_request(self) -> None:
        """
        An idle keep-alive connection is not timed by the header deadline;
        the next request's head is, from its first byte.
        """
        self.send(b"GET / HTTP/1.1\r\nHost: unknown.example\r\n\r\n")
        self.assertEqual([r[0] for r in parse_responses(self.transport.value())], [404])
        self.transport.clear()
        self.reactor.advance(DEADLINE * 2)
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)
        self.send(b"GET / HTTP/1.1\r\n")
        self.reactor.advance(DEADLINE)
        self.assertRefused(408)


class AcceptedShapesTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    """Valid requests near the hardened edges still reach the upstream, intact."""

    def test_chunked_with_extensions_and_trailer(self) -> None:
        self.send(
            CHUNKED
            + b'3;name=value;flag ; q = "a \\"b\\""\r\nabc\r\n'
            + b"2;x=y\r\nde\r\n"
            + b"0;last\r\nX-Trailer: ok\r\n\r\n"
        )
        upstream = self.assertAccepted().value()
        head, _, body = upstream.partition(b"\r\n\r\n")
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertEqual(body, b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: ok\r\n\r\n")

    def test_chunked_mixed_case(self) -> None:
        self.send(_post(b"transfer-encoding: ChUnKeD") + b"3\r\nabc\r\n0\r\n\r\n")
        upstream = self.assertAccepted().value()
        self.assertTrue(upstream.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), upstream)

    def test_chunked_in_pieces(self) -> None:
        body = b"3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
        self.send(CHUNKED, *[body[i : i + 1] for i in range(len(body))])
        upstream = self.assertAccepted().value()
        self.assertEqual(dechunk(upstream.partition(b"\r\n\r\n")[2]), b"abc0123456789abcdef")

    def test_content_length_body(self) -> None:
        self.send(_post(b"Content-Length: 5") + b"hello")
        upstream = self.assertAccepted().value()
        self.assertTrue(upstream.endswith(b"Content-Length: 5\r\n\r\nhello"), upstream)

    def test_one_empty_line_before_request(self) -> None:
        self.send(b"\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertAccepted()


class StreamingRefusalTests(FrontMixin, _MemoryHarness, SynchronousTestCase):
    """Framing errors in a body that arrives after the request was dispatched."""

    def test_late_framing_error_aborts_upstream(self) -> None:
        """
        A streamed body's error can only be seen once its bytes arrive; by
        then the upstream has the head.  The client gets its 400 and the
        upstream connection is cut, so the upstream never sees a complete
        request.
        """
        self.send(CHUNKED + b"3\r\nabc\r\n")
        upstream = self.assertAccepted()
        self.send(b"zz\r\n")
        responses = parse_responses(self.transport.value())
        self.assertEqual([r[0] for r in responses], [400])
        self.assertFixedResponse(responses[0], 400)
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(upstream.disconnecting, "upstream connection left open")
        self.assertFalse(upstream.value().endswith(b"0\r\n\r\n"))

    def test_refusal_before_upstream_connects(self) -> None:
        """
        Refused while the upstream connection is still being set up: when it
        comes up (possibly before the client's connectionLost is delivered)
        nothing of the refused request may be sent on it.
        """
        self.send(CHUNKED + b"3\r\nabc\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.send(b"zz\r\n")
        self.assertEqual([r[0] for r in parse_responses(self.transport.value())], [400])
        upstream = complete_memory_connection(self.reactor)
        self.assertEqual(upstream.value(), b"")

    def test_framing_error_while_response_streams(self) -> None:
        """
        Once the upstream's response has started, a second status line would
        corrupt it: the connection is aborted instead.
        """
        self.send(CHUNKED + b"3\r\nabc\r\n")
        upstream = self.assertAccepted()
        upstream.protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        started = self.transport.value()
        self.assertTrue(started.startswith(b"HTTP/1.1 200 OK\r\n"), started)
        self.send(b"zz\r\n")
        self.assertEqual(self.transport.value(), started)
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(upstream.disconnecting)


# -- real sockets ----------------------------------------------------------------------


class _Collect(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.closed.callback(self.data)


class RealConnectionTests(FrontMixin, TestCase):
    """The refusals close a real TCP connection, and the real upstream hears nothing."""

    def setUp(self) -> Deferred[None]:
        self.upstream = RecordingUpstream()
        upstream_port = global_reactor.listenTCP(0, self.upstream, interface="127.0.0.1")
        self.addCleanup(upstream_port.stopListening)
        self.gateway, self.site = build_gateway(
            global_reactor,
            one_tenant_snapshot(upstream_port.getHost().port),
            header_deadline=0.3,
        )
        self.site.noisy = False
        port = global_reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(self._settle)
        self.port = port.getHost().port
        return None  # type: ignore[return-value]

    def _settle(self) -> Deferred[None]:
        self.gateway.pool.stop()
        return deferLater(global_reactor, 0.05, lambda: None)

    @inlineCallbacks
    def exchange(self, data: bytes):  # type: ignore[no-untyped-def]
        """Sends C{data}, then reads until the server closes."""
        client = _Collect()
        endpoint = TCP4ClientEndpoint(global_reactor, "127.0.0.1", self.port)
        yield connectProtocol(endpoint, client)
        client.transport.write(data)
        timeout = global_reactor.callLater(5, client.transport.abortConnection)
        received = yield client.closed
        if timeout.active():
            timeout.cancel()
        else:
            self.fail("the server did not close the connection")
        return received

    @inlineCallbacks
    def test_smuggling_shape_closes(self):  # type: ignore[no-untyped-def]
        received = yield self.exchange(
            _post(b"Content-Length: 6", b"Transfer-Encoding: chunked")
            + b"0\r\n\r\nGET /admin HTTP/1.1\r\n"
            + HOST
            + b"\r\n"
        )
        responses = parse_responses(received)
        self.assertEqual([r[0] for r in responses], [400])
        self.assertEqual(responses[0][2], FIXED_BODIES[400])
        self.assertEqual(responses[0][1][b"connection"], [b"close"])
        self.assertEqual((self.upstream.connections, self.upstream.received), (0, b""))

    @inlineCallbacks
    def test_header_deadline_closes(self):  # type: ignore[no-untyped-def]
        received = yield self.exchange(b"GET / HTTP/1.1\r\n" + HOST)
        responses = parse_responses(received)
        self.assertEqual([r[0] for r in responses], [408])
        self.assertEqual((self.upstream.connections, self.upstream.received), (0, b""))

    @inlineCallbacks
    def test_valid_request_reaches_upstream(self):  # type: ignore[no-untyped-def]
        """The same setup passes a valid request, so the refusals above are the parser's."""
        received = yield self.exchange(b"GET /x HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
        responses = parse_responses(received)
        self.assertEqual([(r[0], r[2]) for r in responses], [(200, b"ok\n")])
        self.assertEqual(self.upstream.connections, 1)
        self.assertTrue(self.upstream.received.startswith(b"GET /x HTTP/1.1\r\n"))


both_fronts(globals())

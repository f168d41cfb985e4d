"""
The HTTP/1.1 request head: limits, smuggling rules, parser and serializer.

A gateway in front of many backends is where request-smuggling shapes do
their damage, because the gateway and a backend may disagree on where one
request ends.  So the parser is strict where RFC 9112 allows leniency, and
every refusal carries the status the contract gives it:

  - request line (without its CRLF) over L{MAX_REQUEST_LINE_BYTES}: 414;
  - header section (field lines with their CRLFs, without the request line
    or the empty line) over L{MAX_HEADER_BYTES}, or more than
    L{MAX_HEADER_COUNT} field lines: 431;
  - everything else below: 400 -- a request line that is not exactly
    C{token SP target SP HTTP/1.0|HTTP/1.1} of visible ASCII, a bare CR or
    LF anywhere, obs-fold, a field name that is not a token (so no space
    before the colon), a field value with a control character, a
    Content-Length that is not plain digits or does not fit a signed 64-bit
    integer, two Content-Lengths (even equal), Content-Length with
    Transfer-Encoding, a Transfer-Encoding other than exactly C{chunked},
    twice, or in HTTP/1.0, and a Host missing from HTTP/1.1 or repeated.

An absolute-form target (C{GET http://a.example/ HTTP/1.1}) passes the
parser: which authority it names, and whether that agrees with Host, is the
router's decision.  The one empty line RFC 9112 section 2.2 lets a server
ignore before a request line is the connection's business, not the head's.

The checks are also exported line by line (L{request_line_status},
L{field_line_status}, L{pending_line_status}, L{content_length},
L{transfer_coding_status}, L{host_count_status}) for the twisted.web-based
front, which receives a head one line at a time and applies the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from tenantgw.http1.fields import (
    TCHAR,
    UNDERSCORES_DROP,
    UNDERSCORES_REJECT,
    is_token,
    valid_field_value,
)

MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_COUNT = 100
# Content-Length and chunk sizes above this are refused: a backend that keeps
# lengths in a signed 64-bit integer would read a larger one differently.
MAX_BODY_LENGTH = 2**63 - 1

# method SP request-target SP HTTP-version, visible ASCII only: anything
# else (HTAB, DEL, a bare CR, bytes above 0x7E, a doubled space) is refused.
_REQUEST_LINE = re.compile(rb"([" + TCHAR + rb"]+) ([\x21-\x7e]+) (HTTP/1\.[01])\Z")
# name ":" OWS value OWS; the value is HTAB, SP, VCHAR and obs-text.
_FIELD_LINE = re.compile(rb"([" + TCHAR + rb"]+):([\t\x20-\x7e\x80-\xff]*)\Z")
# A whole header section of such lines, through the empty line.
_SECTION = re.compile(rb"(?:[" + TCHAR + rb"]+:[\t\x20-\x7e\x80-\xff]*\r\n)*\r\n\Z")

_HOST = b"host"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_NOTED_LENGTHS = frozenset(len(name) for name in (_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING))

CHUNKED = None  # RequestHead.length of a chunked body


class HeadError(ValueError):
    """
    The head is refused with C{status}; C{reason} says which rule, for
    logs and tests.  It never quotes the request's bytes.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class RequestHead(NamedTuple):
    """
    A parsed request head.  C{fields} are (name as sent, value without its
    surrounding SP/HTAB), in order, with any the underscore policy dropped
    left out.  C{length} is the body's framing: a byte count (0 when there
    is no body), or L{CHUNKED} (None).
    """

    method: bytes
    target: bytes
    version: bytes
    fields: tuple[tuple[bytes, bytes], ...]
    length: int | None = 0


def request_line_status(line: bytes) -> int:
    """0 if C{line} (without its CRLF) is a valid request line, else 414 or 400."""
    if len(line) > MAX_REQUEST_LINE_BYTES:
        return 414
    return 0 if _REQUEST_LINE.match(line) is not None else 400


def field_line_status(line: bytes) -> int:
    """
    0 if C{line} (without its CRLF) is a well-formed field line, else 400:
    obs-fold, no colon, a name that is not a token, a control character.
    The size limits are the caller's: they depend on the lines before.
    """
    if _FIELD_LINE.match(line) is not None:
        return 0
    return 400


def pending_line_status(pending: bytes, first_line: bool, header_bytes: int) -> int:
    """
    Judges an unterminated line while its end is awaited, so that a bare LF
    is refused now rather than when a CRLF that never comes arrives (a 408),
    and an overlong line before it is all buffered.  C{header_bytes}: what
    the header section's complete lines already count.  0: wait for more.
    """
    if b"\n" in pending:
        return 400  # every line of a head that holds an LF is invalid
    length = len(pending) - (1 if pending.endswith(b"\r") else 0)
    if first_line:
        return 414 if length > MAX_REQUEST_LINE_BYTES else 0
    return 431 if header_bytes + length + 2 > MAX_HEADER_BYTES else 0


def content_length(value: bytes) -> int:
    """
    The length a Content-Length value (OWS already removed) declares; a
    HeadError(400) unless it is plain digits fitting a signed 64-bit
    integer.  The digit count is checked first: int() refuses more than
    4300 digits with a ValueError of its own.
    """
    if not value.isdigit() or len(value) > 19:
        raise HeadError(400, "malformed Content-Length")
    length = int(value)
    if length > MAX_BODY_LENGTH:
        raise HeadError(400, "Content-Length too large")
    return length


def transfer_coding_status(value: bytes, version: bytes, framed: bool) -> int:
    """
    0 if a Transfer-Encoding value (OWS removed) may frame this request:
    exactly C{chunked}, on HTTP/1.1 (RFC 9112 section 6.1), with no
    Content-Length or Transfer-Encoding before it (C{framed}).  A backend
    that honours C{identity} or C{gzip, chunked} while the gateway frames
    otherwise reads a different request.
    """
    if framed or version != b"HTTP/1.1" or value.lower() != b"chunked":
        return 400
    return 0


def host_count_status(count: int, version: bytes) -> int:
    """
    RFC 9112 section 3.2: exactly one Host in HTTP/1.1 (at most one in 1.0).
    Two Host fields are how a request gets routed as one tenant's and
    served as another's.
    """
    if count > 1 or (count == 0 and version == b"HTTP/1.1"):
        return 400
    return 0


def head_end(buffer: bytes) -> int:
    """
    Where the head at the start of C{buffer} ends (the index just past its
    empty line), or -1 while more bytes are needed; a HeadError as soon as
    what is there cannot start a valid head, so that a slow or hostile
    client is refused without buffering past the limits.
    """
    end = buffer.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4
    eol = buffer.find(b"\r\n")
    if eol < 0:
        status = pending_line_status(buffer, True, 0)
    else:
        request_line = buffer[:eol]
        status = request_line_status(request_line)
        if not status:
            section = buffer[eol + 2 :]
            start = section.rfind(b"\r\n") + 2 if b"\r\n" in section else 0
            complete = section[:start]
            if len(complete) > MAX_HEADER_BYTES or complete.count(b"\r\n") > MAX_HEADER_COUNT:
                status = 431
            elif b"\n" in complete.replace(b"\r\n", b""):
                status = 400
            else:
                status = pending_line_status(section[start:], False, len(complete))
    if status:
        raise HeadError(status, "malformed or oversize request head")
    return -1


def parse_request_head(data: bytes, underscores: str = UNDERSCORES_DROP) -> RequestHead:
    """
    Parses one complete head: C{data} is the request line through the empty
    line that ends the header section, and nothing after it.  Raises
    HeadError with the status of the first rule broken, in byte order, so
    the answer is the one a line-by-line reader gives.

    C{underscores} is what a field named with "_" gets (the
    C{--headers-with-underscores} policy): C{allow}, C{drop} (left out of
    C{fields}) or C{reject} (400).  A backend that maps "_" to "-" would
    read Transfer_Encoding as Transfer-Encoding.
    """
    if data[-4:] != b"\r\n\r\n":
        raise HeadError(400, "head does not end with an empty line")
    eol = data.find(b"\r\n")
    request_line = data[:eol]
    matched = _REQUEST_LINE.match(request_line)
    if matched is None or eol > MAX_REQUEST_LINE_BYTES:
        raise HeadError(request_line_status(request_line) or 400, "malformed request line")
    method, target, version = matched.groups()
    lines = data[eol + 2 : -4].split(b"\r\n") if len(data) > eol + 4 else []
    # One pass in C judges the whole section in the common case; only a
    # section that breaks a rule is walked line by line, to find which.
    if (
        len(lines) > MAX_HEADER_COUNT
        or len(data) - eol - 4 > MAX_HEADER_BYTES
        or _SECTION.match(data, eol + 2) is None
    ):
        raise _section_error(lines)
    hosts = 0
    length: int | None = 0
    framed = False
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        if b"_" in name:
            if underscores == UNDERSCORES_REJECT:
                raise HeadError(400, "field name with an underscore")
            if underscores == UNDERSCORES_DROP:
                continue
        if len(name) in _NOTED_LENGTHS:  # spares a lower() for most fields
            lowered = name.lower()
            if lowered == _HOST:
                hosts += 1
            elif lowered == _CONTENT_LENGTH:
                if framed:
                    raise HeadError(400, "second framing field")
                length = content_length(value)
                framed = True
            elif lowered == _TRANSFER_ENCODING:
                if transfer_coding_status(value, version, framed):
                    raise HeadError(400, "Transfer-Encoding refused")
                length = CHUNKED
                framed = True
        fields.append((name, value))
    if host_count_status(hosts, version):
        raise HeadError(400, "Host missing or repeated")
    return RequestHead(method, target, version, tuple(fields), length)


def _section_error(lines: list[bytes]) -> HeadError:
    """The first rule the header section's lines break, in the order a line reader finds it."""
    size = 0
    for count, line in enumerate(lines, 1):
        if line[:1] in (b" ", b"\t"):
            return HeadError(400, "obs-fold")
        if b"\r" in line or b"\n" in line:
            return HeadError(400, "bare CR or LF")
        size += len(line) + 2
        if count > MAX_HEADER_COUNT or size > MAX_HEADER_BYTES:
            return HeadError(431, "header section too large")
        if _FIELD_LINE.match(line) is None:
            return HeadError(400, "malformed field line")
    return HeadError(400, "malformed header section")


def serialize_request_head(head: RequestHead) -> bytes:
    """
    The wire form of C{head}, for an upstream or a test.  A ValueError for
    anything that could not be parsed back as the same head: a name that
    is not a token, a value with a control character or surrounding space,
    a request line the parser would refuse.
    """
    request_line = b"%s %s %s" % (head.method, head.target, head.version)
    if request_line_status(request_line):
        raise ValueError("request line would be refused")
    return b"".join((request_line, b"\r\n", serialize_fields(head.fields), b"\r\n"))


def serialize_fields(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """C{Name: value} lines with their CRLFs; a ValueError for a field that would not parse."""
    parts: list[bytes] = []
    for name, value in fields:
        if not is_token(name):
            raise ValueError("field name is not a token")
        if not valid_field_value(value) or value != value.strip(b" \t"):
            raise ValueError("field value would not parse back")
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)

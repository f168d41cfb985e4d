"""
Which parser the HTTP/1.1 request head should go through, measured on a
realistic GET head:

  - tenantgw.http1.head.parse_request_head, the wire layer's hand-written
    parser (one split, one regex per line), every hardening rule included;
  - httptools.HttpRequestParser (llhttp) with callbacks collecting the
    fields, alone, and with the checks llhttp does not make (or makes
    leniently) on top: the field grammar of each line, Host exactly once,
    one framing field, Content-Length digits;
  - the channel's former one-pass fast path (its two regexes, copied here),
    which took plain bodyless heads and checked less;
  - the same head fed through twisted.web's line-by-line HTTPChannel parser
    (what a head split over several reads still takes).

Run: .venv/bin/python benchmarks/http1_parse.py  (httptools is in the dev extra)
It prints microseconds per head for each; nothing here is asserted.
"""

from __future__ import annotations

import re
import timeit

import httptools

from tenantgw.http1.fields import TCHAR
from tenantgw.http1.head import HeadError, content_length, parse_request_head

HEAD = (
    b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n"
    b"Cookie: session=0123456789abcdef\r\nX-Request-Id: 0123456789abcdef0123456789abcdef\r\n\r\n"
)

_OLD_REQUEST_LINE = re.compile(rb"([" + TCHAR + rb"]+) ([\x21-\x7e]+) (HTTP/1\.[01])\Z")
_OLD_FIELD_LINE = re.compile(rb"([" + TCHAR + rb"]+):([\t\x20-\x7e\x80-\xff]*)\Z")
_FIELD_NAME = re.compile(rb"[" + TCHAR + rb"]+\Z")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")


def wire_layer() -> object:
    return parse_request_head(HEAD)


def old_fast_path() -> object:
    lines = HEAD[:-4].split(b"\r\n")
    matched = _OLD_REQUEST_LINE.match(lines[0])
    fields = []
    for line in lines[1:]:
        field = _OLD_FIELD_LINE.match(line)
        assert field is not None
        name = field.group(1)
        if name.lower() in (b"content-length", b"transfer-encoding") or b"_" in name:
            raise AssertionError
        fields.append((name, field.group(2).strip(b" \t")))
    return matched, fields


class _Collect:
    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


def with_httptools() -> object:
    collect = _Collect()
    parser = httptools.HttpRequestParser(collect)
    parser.feed_data(HEAD)
    return parser.get_method(), collect.url, collect.fields


def httptools_hardened() -> object:
    """llhttp, plus the rules it leaves to its caller or applies leniently."""
    collect = _Collect()
    parser = httptools.HttpRequestParser(collect)
    parser.feed_data(HEAD)
    hosts = framing = 0
    for name, value in collect.fields:
        if _FIELD_NAME.match(name) is None or _FIELD_VALUE.match(value) is None:
            raise HeadError(400, "field")
        lowered = name.lower()
        if lowered == b"host":
            hosts += 1
        elif lowered == b"content-length":
            framing += 1
            content_length(value)
        elif lowered == b"transfer-encoding":
            framing += 1
            if value.lower() != b"chunked":
                raise HeadError(400, "te")
    if hosts != 1 or framing > 1:
        raise HeadError(400, "host or framing")
    if parser.get_http_version() not in ("1.0", "1.1"):
        raise HeadError(400, "version")
    return parser.get_method(), collect.url, collect.fields


def twisted_lines() -> object:
    from twisted.internet.testing import StringTransport
    from twisted.web.http import HTTPChannel, Request

    class _Quiet(Request):
        def process(self) -> None:
            self.finished = 1

    channel = HTTPChannel()
    channel.requestFactory = _Quiet
    channel.makeConnection(StringTransport())
    channel.dataReceived(HEAD)
    return channel


def main() -> None:
    for name, function in (
        ("http1.parse_request_head", wire_layer),
        ("httptools (llhttp) alone", with_httptools),
        ("httptools + hardening", httptools_hardened),
        ("former fast path (regex)", old_fast_path),
        ("twisted.web line parser", twisted_lines),
    ):
        number = 20000
        best = min(timeit.repeat(function, number=number, repeat=5))
        print(f"{name:28s} {best / number * 1e6:7.2f} us per head")


if __name__ == "__main__":
    main()

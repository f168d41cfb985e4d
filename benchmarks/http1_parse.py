"""
What choosing httptools (llhttp) for the HTTP/1.1 request head would buy,
measured against what the gateway does today on a realistic GET head:

  - the channel's one-pass fast path (its regexes, as in
    tenantgw.dataplane.channel), which takes plain bodyless heads;
  - the same head fed through twisted.web's line-by-line HTTPChannel
    parser (what every head with a body, a CTL or a "_" takes);
  - httptools.HttpRequestParser with callbacks collecting the fields.

Run: .venv/bin/python benchmarks/http1_parse.py  (needs `pip install httptools`)
It prints microseconds per head for each; nothing here is asserted.
"""

from __future__ import annotations

import timeit

import httptools

from tenantgw.dataplane.channel import _PLAIN_FIELD_LINE, _PLAIN_REQUEST_LINE

HEAD = (
    b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n"
    b"Cookie: session=0123456789abcdef\r\nX-Request-Id: 0123456789abcdef0123456789abcdef\r\n\r\n"
)


def fast_path() -> object:
    lines = HEAD[:-4].split(b"\r\n")
    matched = _PLAIN_REQUEST_LINE.match(lines[0])
    fields = []
    for line in lines[1:]:
        field = _PLAIN_FIELD_LINE.match(line)
        assert field is not None
        fields.append((field.group(1), field.group(2).strip(b" \t")))
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
        ("channel fast path (regex)", fast_path),
        ("twisted.web line parser", twisted_lines),
        ("httptools (llhttp)", with_httptools),
    ):
        number = 20000
        best = min(timeit.repeat(function, number=number, repeat=5))
        print(f"{name:28s} {best / number * 1e6:7.2f} us per head")


if __name__ == "__main__":
    main()

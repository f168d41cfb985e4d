"""
Generated inputs for the HTTP/1.1 wire layer, both directions.

Example tests pin the shapes someone thought of; a smuggling bug lives in
the one nobody did.  So: every generated valid head survives
serialize-then-parse unchanged; a generated chunked body decodes to the
same bytes and trailers however its bytes are split into reads; and a valid
head broken by one hostile byte, or given two framing fields, is refused
with its status and never returned as a request.  The runs are bounded and
derandomized (no example database), so CI sees the same examples each time
and the module takes seconds.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tenantgw.http1.chunked import ChunkedDecoder, ChunkedError, encode_chunk, encode_last_chunk
from tenantgw.http1.fields import UNDERSCORES_ALLOW, UNDERSCORES_DROP
from tenantgw.http1.head import (
    CHUNKED,
    HeadError,
    RequestHead,
    parse_request_head,
    serialize_request_head,
)

BOUNDED = settings(max_examples=200, deadline=None, derandomize=True, database=None)

_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NOTED = {b"host", b"content-length", b"transfer-encoding"}
_VALUE_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]

tokens = st.text(alphabet=_TCHARS, min_size=1, max_size=16).map(lambda t: t.encode("ascii"))
names = tokens.filter(lambda name: name.lower() not in _NOTED)
# Every byte a value may not hold becomes an "a": cheaper to draw than a list.
_TO_VALUE = bytes(c if c in _VALUE_BYTES else 0x61 for c in range(256))
values = st.binary(max_size=24).map(lambda raw: raw.translate(_TO_VALUE).strip(b" \t"))
targets = st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7F)), min_size=1, max_size=60).map(
    lambda t: t.encode("ascii")
)
host_names = st.sampled_from([b"Host", b"host", b"HOST", b"hOsT"])


@st.composite
def heads(draw: st.DrawFn) -> RequestHead:
    """A valid head: one Host (optional in HTTP/1.0), at most one framing field."""
    version = draw(st.sampled_from([b"HTTP/1.0", b"HTTP/1.1"]))
    fields = draw(st.lists(st.tuples(names, values), max_size=8))
    if version == b"HTTP/1.1" or draw(st.booleans()):
        at = draw(st.integers(0, len(fields)))
        fields.insert(at, (draw(host_names), draw(values)))
    framing = draw(
        st.sampled_from(["none", "length"] + (["chunked"] if version == b"HTTP/1.1" else []))
    )
    length: int | None = 0
    if framing == "length":
        length = draw(st.integers(0, 2**63 - 1))
        fields.insert(draw(st.integers(0, len(fields))), (b"Content-Length", b"%d" % length))
    elif framing == "chunked":
        length = CHUNKED
        coding = draw(st.sampled_from([b"chunked", b"Chunked", b"CHUNKED"]))
        fields.insert(draw(st.integers(0, len(fields))), (b"Transfer-Encoding", coding))
    return RequestHead(draw(tokens), draw(targets), version, tuple(fields), length)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


class RoundTripTests(SynchronousTestCase):
    @BOUNDED
    @given(heads())
    def test_parse_of_serialize_is_the_head(self, head: RequestHead) -> None:
        self.assertEqual(parse_request_head(serialize_request_head(head), UNDERSCORES_ALLOW), head)

    @BOUNDED
    @given(heads())
    def test_dropped_underscores_are_only_the_underscored_fields(self, head: RequestHead) -> None:
        parsed = parse_request_head(serialize_request_head(head), UNDERSCORES_DROP)
        kept = tuple(field for field in head.fields if b"_" not in field[0])
        self.assertEqual(parsed, head._replace(fields=kept))


extension = st.tuples(tokens, st.one_of(st.none(), tokens)).map(
    lambda pair: b";" + pair[0] + (b"" if pair[1] is None else b"=" + pair[1])
)
trailer_fields = st.lists(st.tuples(tokens, values), max_size=5)


class ChunkedSplitTests(SynchronousTestCase):
    @BOUNDED
    @given(
        pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
        extensions=st.lists(st.lists(extension, max_size=2), min_size=9, max_size=9),
        trailers=trailer_fields,
        after=st.binary(max_size=20),
        cuts=st.lists(st.integers(0, 10_000), max_size=12),
    )
    def test_any_split_decodes_the_same_body_and_trailers(
        self,
        pieces: list[bytes],
        extensions: list[list[bytes]],
        trailers: list[tuple[bytes, bytes]],
        after: bytes,
        cuts: list[int],
    ) -> None:
        chunks = []
        for piece, exts in zip(pieces, extensions):
            chunk = encode_chunk(piece)
            size, _, rest = chunk.partition(b"\r\n")
            chunks.append(size + b"".join(exts) + b"\r\n" + rest)
        wire = b"".join(chunks) + encode_last_chunk(trailers) + after
        decoder = ChunkedDecoder()
        out = []
        for read in split(wire, cuts):
            out += decoder.feed(read)
        self.assertTrue(decoder.done)
        self.assertEqual(b"".join(out), b"".join(pieces))
        self.assertNotIn(b"", out)
        self.assertEqual(decoder.trailers, trailers)
        self.assertEqual(decoder.rest, after)

    @BOUNDED
    @given(
        pieces=st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=4),
        at=st.integers(0, 10_000),
        byte=st.sampled_from([b"\n", b"\x00", b" ", b"x", b"\r"]),
        cuts=st.lists(st.integers(0, 10_000), max_size=6),
    )
    def test_a_hostile_byte_in_the_framing_is_refused_however_split(
        self, pieces: list[bytes], at: int, byte: bytes, cuts: list[int]
    ) -> None:
        """One byte inserted into a chunk-size line or a chunk's CRLF, never accepted."""
        wire = b"".join(encode_chunk(piece) for piece in pieces) + encode_last_chunk()
        framing = self._framing(wire)
        position = framing[at % len(framing)]
        if byte == b"\r" and wire[position : position + 1] == b"\n":
            # Not between CR and LF, where it would make a bare LF of the wire's.
            position += 1
        broken = wire[:position] + byte + wire[position:]
        decoder = ChunkedDecoder()
        with self.assertRaises(ChunkedError):
            for read in split(broken, cuts):
                decoder.feed(read)
            self.assertTrue(decoder.done)  # not reached: a complete body would be a bug
            raise AssertionError("accepted")

    @staticmethod
    def _framing(wire: bytes) -> list[int]:
        """The indices of an encode_chunk encoding's framing bytes (not chunk data)."""
        framing: list[int] = []
        i = 0
        while True:
            eol = wire.index(b"\r\n", i)
            size = int(wire[i:eol], 16)
            framing += range(i, eol + 2)
            if not size:
                # Not before the last LF: a byte there follows a complete body.
                return framing + list(range(eol + 2, len(wire) - 1))
            data_end = eol + 2 + size
            framing += (data_end, data_end + 1)
            i = data_end + 2


_NAME_POISON = [b"\r", b"\n", b"\x00", b" ", b"\t", b'"', b"(", b"\x7f", b"\xe9"]
_VALUE_POISON = [b"\r", b"\n", b"\x00", b"\x0b", b"\x1f", b"\x7f"]


class HostileTests(SynchronousTestCase):
    def assertRefused(self, data: bytes, status: int) -> None:
        with self.assertRaises(HeadError) as caught:
            parse_request_head(data, UNDERSCORES_ALLOW)
        self.assertEqual(caught.exception.status, status)

    @BOUNDED
    @given(heads(), st.integers(0, 10_000), st.integers(0, 10_000), st.sampled_from(_NAME_POISON))
    def test_a_poisoned_field_name_is_a_400(
        self, head: RequestHead, which: int, at: int, poison: bytes
    ) -> None:
        if not head.fields:
            head = head._replace(fields=((b"X-A", b"1"),))
        fields = list(head.fields)
        name = fields[which % len(fields)][0]
        position = at % (len(name) + 1)
        wire = serialize_request_head(head._replace(fields=()))[:-2]
        for index, (n, v) in enumerate(fields):
            if index == which % len(fields):
                n = n[:position] + poison + n[position:]
            wire += n + b": " + v + b"\r\n"
        self.assertRefused(wire + b"\r\n", 400)

    @BOUNDED
    @given(heads(), st.integers(0, 10_000), st.integers(0, 10_000), st.sampled_from(_VALUE_POISON))
    def test_a_poisoned_field_value_is_a_400(
        self, head: RequestHead, which: int, at: int, poison: bytes
    ) -> None:
        fields = list(head.fields) or [(b"X-A", b"1")]
        index = which % len(fields)
        name, value = fields[index]
        position = at % (len(value) + 1)
        fields[index] = (name, value[:position] + poison + value[position:])
        wire = serialize_request_head(head._replace(fields=()))[:-2]
        wire += b"".join(n + b": " + v + b"\r\n" for n, v in fields)
        self.assertRefused(wire + b"\r\n", 400)

    @BOUNDED
    @given(
        heads(),
        st.integers(0, 2**63 - 1),
        st.integers(0, 2**63 - 1),
        st.integers(0, 100),
        st.integers(0, 100),
    )
    def test_two_content_lengths_are_a_400_even_when_equal(
        self, head: RequestHead, first: int, second: int, at1: int, at2: int
    ) -> None:
        fields = [
            f for f in head.fields if f[0].lower() not in (b"content-length", b"transfer-encoding")
        ]
        fields.insert(at1 % (len(fields) + 1), (b"Content-Length", b"%d" % first))
        fields.insert(at2 % (len(fields) + 1), (b"content-length", b"%d" % second))
        wire = serialize_request_head(head._replace(fields=()))[:-2]
        wire += b"".join(n + b": " + v + b"\r\n" for n, v in fields)
        self.assertRefused(wire + b"\r\n", 400)

    @BOUNDED
    @given(heads(), st.integers(0, 2**63 - 1), st.booleans(), st.integers(0, 100))
    def test_content_length_with_transfer_encoding_is_a_400(
        self, head: RequestHead, length: int, te_first: bool, at: int
    ) -> None:
        fields = [
            f for f in head.fields if f[0].lower() not in (b"content-length", b"transfer-encoding")
        ]
        pair = [(b"Content-Length", b"%d" % length), (b"Transfer-Encoding", b"chunked")]
        if te_first:
            pair.reverse()
        fields.insert(at % (len(fields) + 1), pair[0])
        fields.append(pair[1])
        wire = serialize_request_head(head._replace(fields=()))[:-2]
        wire += b"".join(n + b": " + v + b"\r\n" for n, v in fields)
        self.assertRefused(wire + b"\r\n", 400)

    @BOUNDED
    @given(
        heads(),
        st.integers(0, 10_000),
        st.sampled_from([b"\r", b"\n", b"\x00", b"\t", b" ", b"\x7f"]),
    )
    def test_a_poisoned_request_line_is_a_400(
        self, head: RequestHead, at: int, poison: bytes
    ) -> None:
        wire = serialize_request_head(head)
        line_end = wire.index(b"\r\n")
        position = at % line_end  # inside the line (a doubled separator is refused too)
        self.assertRefused(wire[:position] + poison + wire[position:], 400)

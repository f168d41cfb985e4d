"""
The HTTP/2 front: our own server on the sans-IO C{h2} state machine.

C{frames} follows frame boundaries before C{h2} sees the bytes (header
deadline, header block size), C{request_head} decides whether a received
header list is a request we forward, C{server} is the connection and its
streams, and C{negotiate} picks HTTP/2 or HTTP/1.1 by ALPN.  See
docs/http2.md.
"""

import binascii

import hyperframe.frame


def _raw_data_repr(data: bytes | None) -> str:
    """
    hyperframe's own, without the cost: h2 formats C{repr(frame)} for a
    trace log line on every frame it receives, and hyperframe's repr of a
    DATA frame hexlified the whole payload to keep its first 20 digits
    (16 us per 16 KiB frame, an eighth of an upload's CPU).  Same output.
    """
    if not data:
        return "None"
    if len(data) > 10:
        return "<hex:" + binascii.hexlify(data[:10]).decode("ascii") + "...>"
    return "<hex:" + binascii.hexlify(data).decode("ascii") + ">"


hyperframe.frame._raw_data_repr = _raw_data_repr

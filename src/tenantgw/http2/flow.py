"""
Outbound flow control shared by our HTTP/2 server (responses to clients) and
client (request bodies to upstreams): both send a stream's queued bytes as
far as the peer's window, the frame size and the connection's turn allow.
"""

from __future__ import annotations

from collections import deque

import h2.connection


def next_chunk(
    out: deque[bytes], machine: h2.connection.H2Connection, stream_id: int, room: int
) -> bytes | None:
    """
    The next DATA payload off the front of C{out}, at most C{room} bytes, or
    None while the stream's flow-control window is closed.  What does not
    fit stays at the front of C{out}.
    """
    window = machine.local_flow_control_window(stream_id)
    if window <= 0:
        return None
    chunk = out[0]
    size = min(len(chunk), window, machine.max_outbound_frame_size, room)
    if size < len(chunk):
        out[0] = chunk[size:]
        return chunk[:size]
    out.popleft()
    return chunk

"""
The HTTP/2 front: our own server on the sans-IO C{h2} state machine.

C{frames} follows frame boundaries before C{h2} sees the bytes (header
deadline, header block size), C{request_head} decides whether a received
header list is a request we forward, C{server} is the connection and its
streams, and C{negotiate} picks HTTP/2 or HTTP/1.1 by ALPN.  See
docs/http2.md.
"""

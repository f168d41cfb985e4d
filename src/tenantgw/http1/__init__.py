"""
The HTTP/1.1 wire layer: pure functions from bytes to values and back.

Nothing here touches a transport, a reactor or Twisted: the request-head
parser (L{head}), the chunked decoder and encoder (L{chunked}), the field
grammar with the one hop-by-hop table (L{fields}), the gateway's fixed
responses (L{responses}) and its request ids (L{request_id}).  The front
(C{tenantgw.dataplane.channel}) and the gateway's own answers
(C{tenantgw.dataplane.responses}) take their rules from here, so that the
two cannot disagree on what a request may look like or what a refusal says,
and the rules can be tested by generating inputs rather than by running a
server (C{tests/test_http1_*.py}).
"""

"""
Request ids: the one generator, and the form a client's own id must have.

Every response the gateway produces or forwards carries X-Request-Id, a
refusal written by the front before any request object exists included, so
both take their ids from here and a log search finds either the same way.
"""

from __future__ import annotations

import itertools
import random
import re

# 64 random bits per process, then a counter from a random start: unique
# across processes and restarts without drawing randomness per request.
_PREFIX = b"%016x" % random.SystemRandom().getrandbits(64)
_counter = itertools.count(random.SystemRandom().getrandbits(32))

# A client's X-Request-Id is kept only in this form: long enough to be an
# id, short enough for a log line, and nothing a log viewer could render.
SUPPLIED_REQUEST_ID = re.compile(rb"\A[A-Za-z0-9._:+=/-]{8,128}\Z")


def new_request_id() -> bytes:
    """32 lower-case hex digits, never the same twice in one process."""
    return b"%s%016x" % (_PREFIX, next(_counter))


def valid_request_id(value: bytes) -> bool:
    """Whether a client-supplied id may be kept (and so logged and echoed)."""
    return SUPPLIED_REQUEST_ID.match(value) is not None

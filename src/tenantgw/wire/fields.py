"""
Field (header) grammar and the one hop-by-hop table.

RFC 9110 section 5: a field name is a token; a field value is visible
characters, SP, HTAB and obs-text.  Every other control character (NUL, CR,
LF and the rest of 0x00-0x1F, and DEL) is refused rather than stripped: a
backend that splits or truncates on one of them would see a different
request from the one the gateway checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# RFC 9110 section 5.6.2.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Anything that is not HTAB, SP, VCHAR or obs-text.
_FIELD_VALUE_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# Names whose meaning ends at the next hop (RFC 9110 section 7.6.1, plus
# the legacy ones still seen in the wild).  Lower case.  HTTP2-Settings
# belongs only to an h2c upgrade, which is never passed on.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
    }
)

# What to do with a request field whose name contains "_" (nginx's
# underscores_in_headers, Envoy's headers_with_underscores_action).  A
# backend that maps "_" to "-" (CGI, WSGI, PHP) reads Transfer_Encoding as
# Transfer-Encoding, so by default such fields never reach it.
UNDERSCORES_ALLOW = "allow"
UNDERSCORES_DROP = "drop"
UNDERSCORES_REJECT = "reject"
UNDERSCORE_ACTIONS = (UNDERSCORES_DROP, UNDERSCORES_REJECT, UNDERSCORES_ALLOW)


def is_token(value: bytes) -> bool:
    return _TOKEN.match(value) is not None


def valid_field_value(value: bytes) -> bool:
    """HTAB, SP, visible ASCII and obs-text only."""
    return _FIELD_VALUE_CTL.search(value) is None


def connection_options(values: Iterable[bytes]) -> frozenset[bytes]:
    """The lower-case names a Connection field nominates as hop-by-hop."""
    return frozenset(
        token.strip().lower() for value in values for token in value.split(b",") if token.strip()
    )

"""
Field (header) grammar and the one hop-by-hop table.

This is the only definition of both: C{tenantgw.wire.fields} re-exports it
for the HTTP/2 front and the config checks, so every front drops the same
fields and refuses the same values.

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
TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[" + TCHAR + rb"]+\Z")
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

# Never passed on in a trailer section, either way, besides the hop-by-hop
# names: what RFC 9110 section 6.5.1 forbids there (framing, routing,
# request modifiers, authentication, the response's own controls, how to
# process the content), and what the gateway itself writes about the client.  A backend that folds trailers
# into the header section must not read a forged identity or credential, or
# a second Content-Length, from them.
NOT_IN_TRAILERS = HOP_BY_HOP | frozenset(
    {
        b"authorization",
        b"cache-control",
        b"content-encoding",
        b"content-length",
        b"content-range",
        b"content-type",
        b"cookie",
        b"expect",
        b"forwarded",
        b"host",
        b"if-match",
        b"if-modified-since",
        b"if-none-match",
        b"if-range",
        b"if-unmodified-since",
        b"max-forwards",
        b"pragma",
        b"range",
        b"set-cookie",
        b"via",
        b"www-authenticate",
        b"x-real-ip",
        b"x-request-id",
    }
)
# Prefixes of names the gateway writes (X-Forwarded-*, its own markers).
_NOT_IN_TRAILERS_PREFIXES = (b"x-forwarded-", b"x-tenantgw-")

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


def forwardable_trailers(fields: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """
    The request trailer fields passed on upstream, lower-cased and trimmed
    (the fields were checked well-formed by the front that read them).
    Names with "_" are dropped for the reason underscored headers are.
    """
    kept = []
    for name, value in fields:
        name = name.lower()
        if (
            name in NOT_IN_TRAILERS
            or name.startswith(_NOT_IN_TRAILERS_PREFIXES)
            or b"_" in name
            or name[:1] == b":"
        ):
            continue
        kept.append((name, value.strip(b" \t")))
    return kept

"""
The field grammar and the hop-by-hop table, for the wire rules' users.

Defined once, in L{tenantgw.http1.fields}; this module only re-exports it so
that the HTTP/2 front, the config checks and the data plane name one table.
"""

from __future__ import annotations

from tenantgw.http1.fields import (
    HOP_BY_HOP,
    NOT_IN_TRAILERS,
    UNDERSCORE_ACTIONS,
    UNDERSCORES_ALLOW,
    UNDERSCORES_DROP,
    UNDERSCORES_REJECT,
    connection_options,
    forwardable_trailers,
    is_token,
    valid_field_value,
)

__all__ = [
    "HOP_BY_HOP",
    "NOT_IN_TRAILERS",
    "UNDERSCORES_ALLOW",
    "UNDERSCORES_DROP",
    "UNDERSCORES_REJECT",
    "UNDERSCORE_ACTIONS",
    "connection_options",
    "forwardable_trailers",
    "is_token",
    "valid_field_value",
]

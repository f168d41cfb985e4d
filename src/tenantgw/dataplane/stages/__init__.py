"""
The stages a request passes through, in order, each in its own module:

1. L{hosts}: who the request is for (request id, client address, refused
   methods, Host, hop-by-hop fields, the tenant, TLS name, HTTPS redirect,
   the tenant's address rules).
2. L{tenant}: which of the tenant's routes (path, route match, the route's
   address rules, CORS, credentials).
3. L{admission}: whether it may go on now (body size, concurrency, rate
   limits), and the release of what admission took, when it ends.
4. L{forwarding}: where it goes and how (redirect, refused share, cache,
   endpoint pick, request edits and X-Forwarded-*, mirrors, the exchange).

Each stage takes the request's L{tenantgw.dataplane.context.RequestContext}
and either answers (recording why on the context) or hands the context to
the next.  Stages import the gateway's types for typing only: the gateway
imports the stages, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tenantgw.dataplane.responses import respond

if TYPE_CHECKING:
    from tenantgw.dataplane.context import RequestContext


def refuse(
    context: RequestContext,
    reason: str,
    status: int,
    headers: Iterable[tuple[bytes, bytes]] | None = None,
    close: bool = False,
) -> None:
    """The gateway's own answer, with why it was given (for the L{Outcome})."""
    context.refused(reason)
    respond(context.request, status, headers, close=close)

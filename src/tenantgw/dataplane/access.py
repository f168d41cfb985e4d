"""
Access policy decisions: client address ranges and credentials.

bcrypt is slow on purpose (tens of milliseconds a check), so verifying it on
the reactor thread would let one client stall every tenant.  Verification
runs in a thread pool, and a bounded cache of recent successes (keyed by a
digest of the credentials, never the password itself) keeps the common case
of a returning client synchronous.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import bcrypt
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper, HAProxyWrappingFactory
from twisted.python.threadpool import ThreadPool

from tenantgw.plans.routes import AccessPlan, digest_api_key
from tenantgw.values import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED, DENIED_ADDRESS, DENIED_CREDENTIALS = 0, 403, 401

_VERIFIED_CACHE_SIZE = 10_000


@functools.lru_cache(maxsize=16384)
def parse_address(text: str) -> IPAddress | None:
    """Cached: the same few client addresses arrive again and again."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_allowed(address: IPAddress | None, access: AccessPlan) -> bool:
    """Deny wins over allow; an empty allow list admits everyone."""
    if address is None:
        return not access.allow_cidrs and not access.deny_cidrs
    for network in access.deny_cidrs:
        if address.version == network.version and address in network:
            return False
    if not access.allow_cidrs:
        return True
    return any(
        address.version == network.version and address in network for network in access.allow_cidrs
    )


class AddressVerdicts:
    """
    Whether each client address passes a fixed set of access scopes,
    remembered: the same clients come back, and the answer cannot change
    until the scopes do (a new snapshot builds a new one of these).
    """

    LIMIT = 16384

    def __init__(self, scopes: Sequence[AccessPlan]) -> None:
        self.scopes = tuple(scope for scope in scopes if scope.checks_address)
        self.verdicts: dict[str, bool] = {}

    def allowed(self, client: str) -> bool:
        verdict = self.verdicts.get(client)
        if verdict is None:
            address = parse_address(client)
            verdict = all(address_allowed(address, scope) for scope in self.scopes)
            if len(self.verdicts) >= self.LIMIT:
                self.verdicts.clear()
            self.verdicts[client] = verdict
        return verdict


def client_address(
    peer: str, forwarded_for: Sequence[bytes] | None, trusted: tuple[IPNetwork, ...]
) -> str:
    """
    The peer, unless the peer is a trusted proxy: then the right-most address
    in X-Forwarded-For that is not itself trusted (everything left of it was
    written by parties we cannot vouch for).
    """
    if not trusted or not forwarded_for:
        return peer
    parsed = parse_address(peer)
    if parsed is None or not _in_any(parsed, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return peer
        if not _in_any(address, trusted):
            return str(address)
    return peer


def _in_any(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


class CredentialChecker:
    """Checks API keys synchronously and basic auth through a thread pool."""

    def __init__(self, reactor: IReactorFromThreads, threadpool: ThreadPool) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def check(
        self,
        access: AccessPlan,
        authorization: bytes | None,
        api_key_header: bytes | None,
    ) -> bool | Deferred[bool]:
        """
        True, False, or a Deferred firing with one of them.  When a scope
        accepts both basic auth and API keys, either credential admits.
        """
        if access.api_key_digests is not None:
            presented = api_key_header
            if presented is None and authorization and authorization[:7].lower() == b"bearer ":
                presented = authorization[7:].strip()
            if presented is not None and digest_api_key(presented) in access.api_key_digests:
                return True
            if access.basic_auth_realm is None:
                return False
        if access.basic_auth_realm is None:
            return True
        if not authorization or authorization[:6].lower() != b"basic ":
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True)
        except ValueError:
            return False
        user, colon, password = decoded.partition(b":")
        if not colon:
            return False
        stored = access.basic_auth_users.get(user.decode("utf-8", "replace"))
        if stored is None:
            # Same work as a real check, so a timing probe cannot enumerate users.
            stored = _DUMMY_HASH
        cache_key = hashlib.sha256(b"%s\0%s\0%s" % (stored, user, password)).digest()
        if cache_key in self._verified:
            self._verified.move_to_end(cache_key)
            return user.decode("utf-8", "replace") in access.basic_auth_users
        known = stored is not _DUMMY_HASH
        d = deferToThreadPool(self._reactor, self._threadpool, _checkpw, password, stored)

        def remember(ok: bool) -> bool:
            if ok and known:
                self._verified[cache_key] = None
                if len(self._verified) > _VERIFIED_CACHE_SIZE:
                    self._verified.popitem(last=False)
            return ok and known

        return d.addCallback(remember)


_DUMMY_HASH = bcrypt.hashpw(b"tenantgw-no-such-user", bcrypt.gensalt(rounds=10))


def _checkpw(password: bytes, stored: bytes) -> bool:
    if stored.startswith(b"$2y$"):
        # htpasswd writes $2y$; the algorithm is the same as $2b$.
        stored = b"$2b$" + stored[4:]
    try:
        return bcrypt.checkpw(password, stored)
    except ValueError:
        return False


class _TrustedPeerProxyProtocol(HAProxyProtocolWrapper):
    """
    Believes a PROXY header only from a trusted proxy: any other peer is
    disconnected at once, before it can send a byte of a request.  (An
    untrusted peer's header cannot be ignored instead: the listener expects
    one first, so without it the bytes could not be told from a forgery.)
    Twisted exports only C{proxyEndpoint}, which cannot check who sent the
    header, so the wrapper it uses is subclassed here.
    """

    factory: TrustedProxyProtocolFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        transport: Any = self.transport
        peer = parse_address(getattr(transport.getPeer(), "host", ""))
        if peer is None or not _in_any(peer, self.factory.trusted):
            self.factory.refused += 1
            transport.abortConnection()


class TrustedProxyProtocolFactory(HAProxyWrappingFactory):
    """
    Twisted's PROXY protocol (v1 and v2) wrapper around a listener's factory,
    accepting connections only from C{trusted} networks; the client address
    the gateway then sees is the one in the PROXY header.
    """

    protocol = _TrustedPeerProxyProtocol  # type: ignore[assignment]

    def __init__(self, wrapped: Any, trusted: tuple[IPNetwork, ...]) -> None:
        super().__init__(wrapped)
        self.trusted = trusted
        self.refused = 0

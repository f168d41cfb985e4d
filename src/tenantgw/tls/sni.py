"""
One HTTPS listener for every tenant: the certificate is chosen by SNI.

The choice is made on each handshake from the snapshot serving at that
moment, so a rotated Secret is served on the next handshake while
connections already open keep the certificate they started with, and no
listener is ever restarted.  OpenSSL contexts are cached by certificate
fingerprint and dropped once no snapshot names them.
"""

from __future__ import annotations

from collections.abc import Callable

from OpenSSL import SSL, crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger

from tenantgw.plans.snapshot import Snapshot
from tenantgw.tls.certificates import ServingCertificate

_log = Logger()

# Offered in order of preference; every tenant context offers the same, since
# OpenSSL negotiates ALPN after the SNI callback has switched contexts.
ALPN_PROTOCOLS = [b"h2", b"http/1.1"]


def certificate_options(
    certificate: ServingCertificate,
    minimum: TLSVersion,
    server_name_callback: Callable[[bytes | None], SSL.Context | None] | None = None,
) -> CertificateOptions:
    chain = [
        crypto.load_certificate(crypto.FILETYPE_PEM, block)
        for block in _pem_blocks(certificate.chain_pem)
    ]
    return CertificateOptions(
        privateKey=crypto.load_privatekey(crypto.FILETYPE_PEM, certificate.key_pem),
        certificate=chain[0],
        extraCertChain=chain[1:],
        raiseMinimumTo=minimum,
        acceptableProtocols=ALPN_PROTOCOLS,
        contextForServerName=server_name_callback,
    )


def _pem_blocks(pem: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [block + marker for block in pem.split(marker) if b"-----BEGIN" in block]


class SNIContexts:
    """
    The HTTPS listener's TLS options: the default certificate, switched per
    connection to the tenant certificate that the current snapshot names for
    the client's SNI.
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        default: ServingCertificate,
        minimum: TLSVersion = TLSVersion.TLSv1_2,
        selected: Callable[[str], object] = lambda outcome: None,
        handshake: Callable[[str], object] | None = None,
    ) -> None:
        # Told, per handshake, which certificate SNI chose (for metrics).
        self._selected = selected
        self._snapshot = snapshot
        self._minimum = minimum
        self._contexts: dict[str, SSL.Context] = {}
        self._info: Callable[[SSL.Connection, int, int], None] | None = None
        self.options = certificate_options(default, minimum, self.context_for)
        if handshake is not None:
            self._watch_handshakes(handshake)

    def _watch_handshakes(self, report: Callable[[str], object]) -> None:
        """
        Reports each handshake's outcome: "ok" when it completes, "failed"
        on a fatal alert, sent or received, before it completes.  The callback is
        OpenSSL's info callback, set on the listener's context and on every
        tenant context: after SNI switches a connection to a tenant's
        context, OpenSSL asks that context's callback.
        """
        fatal = 2  # the alert level, in the high byte of C{ret}

        def info(connection: SSL.Connection, where: int, ret: int) -> None:
            if where & SSL.SSL_CB_HANDSHAKE_DONE:
                report("ok")
            elif (
                where & SSL.SSL_CB_ALERT
                and ret >> 8 == fatal
                and connection.get_peer_finished() is None
            ):
                # Only before the client's Finished: a fatal alert on an
                # established connection (curl closing an HTTP/2 connection
                # without close_notify makes OpenSSL send one) ends a
                # connection whose handshake succeeded and was counted.
                report("failed")

        self._info = info
        self.options.getContext().set_info_callback(info)

    def context_for(self, server_name: bytes | None) -> SSL.Context | None:
        """
        Called by OpenSSL during the handshake: the tenant's certificate for
        the name, else the default from --default-cert-secret, else None,
        which keeps the listener's own default.
        """
        snapshot = self._snapshot()
        certificate = None
        if server_name:
            try:
                name = server_name.decode("ascii").lower().rstrip(".")
            except UnicodeDecodeError:
                name = ""
            certificate = snapshot.certificate_for(name) if name else None
        outcome = "tenant"
        if certificate is None:
            certificate = snapshot.default_certificate
            outcome = "default_secret"
        if certificate is None:
            self._selected("listener_default")
            return None
        self._selected(outcome)
        context = self._contexts.get(certificate.fingerprint)
        if context is None:
            if len(self._contexts) >= 2 * max(16, len(snapshot.certificates)):
                live = {c.fingerprint for c in snapshot.certificates.values()}
                self._contexts = {f: c for f, c in self._contexts.items() if f in live}
            context = certificate_options(certificate, self._minimum).getContext()
            if self._info is not None:
                context.set_info_callback(self._info)
            self._contexts[certificate.fingerprint] = context
        return context

"""
TLS to upstreams: verified against the Service's DNS name.

A backend port named ``https`` (or with ``appProtocol: https``) is dialled
with TLS and its certificate checked by service_identity against
``<service>.<namespace>.svc``, trusting the CA bundle given by
``--upstream-ca`` (the system's roots without one).  A failed check fails
the handshake, which the exchange reports as a 502.
"""

from __future__ import annotations

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)


def _certificates(bundle: bytes) -> list[Certificate]:
    marker = b"-----END CERTIFICATE-----"
    blocks = [block + marker for block in bundle.split(marker) if b"-----BEGIN" in block]
    return [Certificate.loadPEM(block) for block in blocks]


class UpstreamTrust:
    """Client TLS options per upstream name, built once each."""

    def __init__(self, ca_bundle: bytes | None = None) -> None:
        if ca_bundle is not None:
            certificates = _certificates(ca_bundle)
            if not certificates:
                raise ValueError("no PEM certificate in the upstream CA bundle")
            self._trust = trustRootFromCertificates(certificates)
        else:
            self._trust = platformTrust()
        self._options: dict[tuple[str, tuple[bytes, ...]], IOpenSSLClientConnectionCreator] = {}

    def options_for(
        self, server_name: str, alpn: tuple[bytes, ...] = ()
    ) -> IOpenSSLClientConnectionCreator:
        """C{alpn}: the protocols offered by ALPN (none for the HTTP/1.1 pool)."""
        options = self._options.get((server_name, alpn))
        if options is None:
            if alpn:
                options = optionsForClientTLS(
                    server_name, trustRoot=self._trust, acceptableProtocols=list(alpn)
                )
            else:
                options = optionsForClientTLS(server_name, trustRoot=self._trust)
            self._options[(server_name, alpn)] = options
        return options

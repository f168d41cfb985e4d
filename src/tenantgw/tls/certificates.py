"""
Serving certificates from ``kubernetes.io/tls`` Secrets, validated.

Loading is pure (bytes in, a certificate or a reason out) and cached by the
PEM bytes, so the compile step can check every tenant's certificate on every
rebuild without parsing an unchanged one twice.  The checks are those a
client would make, done in advance: a certificate whose key does not match,
that has expired, or whose names do not cover a host would fail every
handshake for that host, so the tenant is told instead (CertificateError).
"""

from __future__ import annotations

import datetime
import functools
import hashlib

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


class CertificateProblem(ValueError):
    """Why a certificate cannot serve; the message is shown to the tenant."""


@frozen
class ServingCertificate:
    """A validated certificate chain and its key, as PEM, with what it covers."""

    chain_pem: bytes
    key_pem: bytes
    dns_names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str  # identifies this exact certificate, for caching and rotation

    def covers(self, host: str) -> bool:
        return any(name_covers(name, host) for name in self.dns_names)


def name_covers(name: str, host: str) -> bool:
    """
    RFC 6125 matching: a wildcard covers exactly one leftmost label.  A
    tenant's wildcard host (``*.shop.example.com``) is covered only by the
    same wildcard name, since it stands for any name under it.
    """
    name = name.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if name == host:
        return True
    if name.startswith("*.") and not host.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == name[2:]
    return False


def _key_matches(key: object, certificate: x509.Certificate) -> bool:
    if not isinstance(
        key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
    ):
        return False
    public = certificate.public_key()
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*raw) == public.public_bytes(*raw))


@functools.lru_cache(maxsize=4096)
def load_certificate(chain_pem: bytes, key_pem: bytes) -> ServingCertificate:
    """
    Parses and checks a chain and key.  Dates are checked apart (see
    L{check_dates}) so that this stays cacheable as time passes.
    """
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise CertificateProblem("tls.crt is not a PEM certificate chain") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CertificateProblem("tls.key is not an unencrypted PEM private key") from None
    leaf = chain[0]
    if not _key_matches(key, leaf):
        raise CertificateProblem("tls.key does not match the certificate in tls.crt")
    try:
        alternative_names = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        names = alternative_names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        raise CertificateProblem("the certificate has no DNS subject alternative names")
    return ServingCertificate(
        chain_pem=chain_pem,
        key_pem=key_pem,
        dns_names=tuple(n.lower() for n in names),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


def check_dates(certificate: ServingCertificate, now: datetime.datetime) -> None:
    if certificate.not_before > now:
        raise CertificateProblem(
            f"the certificate is not valid before {certificate.not_before.isoformat()}"
        )
    if certificate.not_after <= now:
        raise CertificateProblem(f"the certificate expired at {certificate.not_after.isoformat()}")

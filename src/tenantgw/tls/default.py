"""
The certificate for handshakes that name no tenant's host (or none at all).

It comes from ``--default-cert``/``--default-key``; without them a
self-signed one is made at start, so the HTTPS listener always works, and
the operator is warned that clients will not trust it.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenantgw.tls.certificates import CertificateProblem, ServingCertificate, load_certificate

SELF_SIGNED_NAME = "tenantgw.invalid"


def self_signed(
    names: tuple[str, ...] = (SELF_SIGNED_NAME,),
    now: datetime.datetime | None = None,
    days: int = 365,
) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key and a certificate for C{names}, as PEM (chain, key)."""
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def default_certificate(cert_path: str | None, key_path: str | None) -> ServingCertificate:
    """Raises L{CertificateProblem} naming the option when the files are unusable."""
    if cert_path is None and key_path is None:
        return load_certificate(*self_signed())
    if cert_path is None or key_path is None:
        raise CertificateProblem("--default-cert and --default-key go together")
    try:
        with open(cert_path, "rb") as f:
            chain = f.read()
        with open(key_path, "rb") as f:
            key = f.read()
    except OSError as e:
        raise CertificateProblem(f"cannot read the default certificate: {e}") from None
    return load_certificate(chain, key)

"""Self-signed certificates for a LAN trial of ``remotemedia serve`` over HTTPS.

``remotemedia serve --make-cert DIR`` writes ``DIR/cert.pem`` and ``DIR/key.pem`` (an ECDSA
P-256 key, readable by its owner only) for the names and addresses given, and prints the
certificate's SHA-256 fingerprint, which a user compares with the one the browser shows before
accepting it. Needs the ``cryptography`` package (``remotemedia[webrtc]``).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

DEFAULT_DAYS = 30


@dataclass(frozen=True)
class MadeCertificate:
    """Where the pair went, and how to recognise the certificate."""

    cert_file: Path
    key_file: Path
    sha256: str  # "AB:CD:..." as browsers show it
    spki_sha256: str  # base64 of the public key's SHA-256 (Chromium's SPKI pin format)
    names: tuple[str, ...]


def make_self_signed(
    directory: Path, names: Sequence[str], days: int = DEFAULT_DAYS
) -> MadeCertificate:
    """Write a self-signed certificate for ``names`` (DNS names and/or IP addresses) and its key
    into ``directory``; raises ConfigError for no names or an existing pair (never overwritten).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise ConfigError("a certificate needs at least one host name or address")
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    for path in (cert_file, key_file):
        if path.exists():
            raise ConfigError(f"{path} exists; remove it or pick another directory")
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return MadeCertificate(
        cert_file, key_file, fingerprint(cert_file), spki_sha256(cert_file), names
    )


def fingerprint(cert_file: Path) -> str:
    """The certificate's SHA-256 fingerprint, colon-separated hex (as browsers show it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def spki_sha256(cert_file: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): the pin Chromium's
    ``--ignore-certificate-errors-spki-list`` takes."""
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


__all__ = ["DEFAULT_DAYS", "MadeCertificate", "fingerprint", "make_self_signed", "spki_sha256"]

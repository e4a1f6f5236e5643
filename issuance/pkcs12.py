"""PKCS#12 (RFC 7292) files for keys the service generates at download time.

Two profiles (DESIGN.md):
- ``modern``: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC for key and certificates,
  HMAC-SHA256 MAC (RFC 8018, RFC 9579). OpenSSL 3 default; Java 17+, recent macOS and
  Windows 10 1709+.
- ``legacy``: pbeWithSHAAnd3-KeyTripleDES-CBC and a SHA-1 MAC (RFC 7292 Appendix C) for
  older Windows, macOS and Java.

Both carry the certificate, the issuing and root CA certificates and a friendly name
(the service location's name). The key is never stored: it lives only in the bytes
returned to the one response that asked for it.
"""

from __future__ import annotations

import enum

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from ca.keys import PrivateKey
from issuance.errors import PKCS12PasswordRejected

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
#: PBKDF2 iterations for ``modern`` (OWASP 2023 guidance for PBKDF2-SHA256 is higher,
#: but PKCS#12 consumers, Windows included, take minutes at 600k; 100k costs ~7 ms here).
MODERN_KDF_ROUNDS = 100_000
LEGACY_KDF_ROUNDS = 2048


class PKCS12Profile(enum.StrEnum):
    """Encryption profile of a PKCS#12 file."""

    MODERN = "modern"
    LEGACY = "legacy"


def check_pkcs12_password(password: str) -> bytes:
    """Return ``password`` as UTF-8 if it is 12 to 128 printable characters.

    Raises:
        PKCS12PasswordRejected: empty, too short, too long, or with control characters.
    """
    if not (MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH):
        raise PKCS12PasswordRejected(
            f"PKCS#12 password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    if not password.isprintable():
        raise PKCS12PasswordRejected("PKCS#12 password must not contain control characters")
    return password.encode("utf-8")


def serialize_pkcs12(
    *,
    friendly_name: str,
    private_key: PrivateKey,
    certificate: x509.Certificate,
    ca_certificates: list[x509.Certificate],
    password: str,
    profile: PKCS12Profile,
) -> bytes:
    """Build the DER PKCS#12 (PFX) for ``certificate`` and ``private_key``.

    Args:
        friendly_name: PKCS#9 friendlyName of the key and certificate bags (UTF-8).
        ca_certificates: issuing CA first, then the root.
        password: checked by :func:`check_pkcs12_password`.

    Raises:
        PKCS12PasswordRejected: see :func:`check_pkcs12_password`.
    """
    secret = check_pkcs12_password(password)
    builder = PrivateFormat.PKCS12.encryption_builder()
    if profile is PKCS12Profile.MODERN:
        builder = (
            builder.kdf_rounds(MODERN_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    else:
        builder = (
            builder.kdf_rounds(LEGACY_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - legacy profile by design (RFC 7292 App. C)
        )
    cas = [
        pkcs12.PKCS12Certificate(ca, ca.subject.rfc4514_string().encode("utf-8"))
        for ca in ca_certificates
    ]
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"), private_key, certificate, cas, builder.build(secret)
    )

"""Certificate signing requests (PKCS#10, RFC 2986): parse, verify, apply the key policy.

Only the public key of a CSR is used: subject, subjectAltName and every requested
extension are ignored (the approved application and the profile decide them);
:func:`check_csr` reports what it ignored so the response can say so.

Key policy (NIST SP 800-57, SP 800-89 and CA/B Forum BR 6.1.5/6.1.6):
RSA 2048-8192 bits with public exponent 65537; EC on P-256 or P-384.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.keys import PublicKey
from issuance.errors import CSRKeyRejected, CSRMalformed, CSRSignatureInvalid

MAX_CSR_BYTES = 16 * 1024
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
RSA_EXPONENT = 65537
ALLOWED_CURVES = {"secp256r1", "secp384r1"}


@dataclass(frozen=True, slots=True)
class CheckedCSR:
    """A CSR that passed every check.

    Attributes:
        public_key: the only thing taken into the certificate.
        ignored: what the CSR asked for that ehrca ignored (``subject``, extension names).
    """

    public_key: PublicKey
    ignored: tuple[str, ...]


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR of at most 16 KiB.

    Raises:
        CSRMalformed: too large, or not a PKCS#10 request.
    """
    if len(data) > MAX_CSR_BYTES:
        raise CSRMalformed(f"CSR is larger than {MAX_CSR_BYTES} bytes")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CSRMalformed("CSR is not a PEM or DER PKCS#10 certification request") from exc


def check_public_key(key: object) -> PublicKey:
    """Apply the key policy to ``key``.

    Raises:
        CSRKeyRejected: with codes ``csr_key_type_unsupported``, ``csr_rsa_key_too_small``,
            ``csr_rsa_key_too_large``, ``csr_rsa_exponent``, ``csr_ec_curve_unsupported``.
    """
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            raise CSRKeyRejected(
                f"RSA keys must have at least {RSA_MIN_BITS} bits (got {key.key_size})",
                code="csr_rsa_key_too_small",
            )
        if key.key_size > RSA_MAX_BITS:
            raise CSRKeyRejected(
                f"RSA keys must have at most {RSA_MAX_BITS} bits (got {key.key_size})",
                code="csr_rsa_key_too_large",
            )
        if key.public_numbers().e != RSA_EXPONENT:
            raise CSRKeyRejected("RSA public exponent must be 65537", code="csr_rsa_exponent")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise CSRKeyRejected(
                f"EC keys must be on P-256 or P-384 (got {key.curve.name})",
                code="csr_ec_curve_unsupported",
            )
        return key
    raise CSRKeyRejected(
        "only RSA and EC (P-256, P-384) keys are accepted", code="csr_key_type_unsupported"
    )


def check_csr(data: bytes) -> CheckedCSR:
    """Parse ``data``, verify its signature (proof of possession) and its key.

    Raises:
        CSRMalformed, CSRSignatureInvalid, CSRKeyRejected.
    """
    csr = load_csr(data)
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise CSRMalformed("CSR public key cannot be parsed") from exc
    checked_key = check_public_key(public_key)
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise CSRSignatureInvalid("CSR signature cannot be checked") from exc
    if not valid:
        raise CSRSignatureInvalid("CSR signature does not verify (no proof of possession)")
    ignored: list[str] = []
    if len(csr.subject) > 0:
        ignored.append("subject")
    try:
        extensions = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CSRMalformed("CSR extensions cannot be parsed") from exc
    for extension in extensions:
        name = (
            extension.oid._name
            if extension.oid._name != "Unknown OID"
            else extension.oid.dotted_string
        )
        ignored.append(f"extension:{name}")
    return CheckedCSR(checked_key, tuple(ignored))

"""OCSP (RFC 6960) without I/O: parse a request, match its CertID against an issuer,
build and sign a response.

Profile (the lightweight profile of RFC 5019, which RFC 6960 clients all speak):

- One ``Request`` per ``OCSPRequest`` (RFC 5019 2.1.1); a request list of another
  length is ``malformedRequest``, as is anything that is not a DER ``OCSPRequest``, a
  request over :data:`MAX_REQUEST_BYTES`, an unsupported CertID hash algorithm, or a
  nonce outside 1..32 octets (RFC 8954 2.1: ``Nonce ::= OCTET STRING(SIZE(1..32))``;
  responders reject longer nonces with ``malformedRequest``). A request signature
  (RFC 6960 4.1.2, optional) is not checked: the responder answers anyone.
- The response is a ``BasicOCSPResponse`` signed by a delegated responder certificate
  (RFC 6960 4.2.2.2, extendedKeyUsage id-kp-OCSPSigning, issued directly by the CA
  the request names), identified by key hash (``ResponderID byKey``, RFC 6960
  4.2.2.3) and included in ``certs`` so clients can check the delegation.
- ``certStatus``: ``good``, ``revoked`` (revocationTime; revocationReason unless
  ``unspecified``, as on the CRL, RFC 5280 5.3.1) or ``unknown`` (RFC 6960 2.2).
  thisUpdate/nextUpdate are whole seconds (RFC 6960 4.2.2.1); a nonce in the request
  is echoed in responseExtensions (RFC 6960 4.4.1).
- ``producedAt`` is set by cryptography's builder from the system clock.

Sources: RFC 6960 sections 2, 4.1, 4.2, 4.4.1, A.1; RFC 5019 2.1, 6; RFC 8954 2.1.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
from dataclasses import dataclass

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca.keys import PrivateKey
from ca.profiles import signature_hash

#: Largest request body accepted (octets). A one-certificate request is about 100
#: octets, a signed one with its signer's chain a few kilobytes.
MAX_REQUEST_BYTES = 16 * 1024
#: Longest nonce accepted (octets), RFC 8954 2.1.
MAX_NONCE_BYTES = 32

#: CertID hash algorithms understood (RFC 6960 4.1.1 leaves the choice to the client;
#: OpenSSL sends SHA-1, others SHA-256).
_HASHES: dict[str, str] = {
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
}


class CertStatus(enum.StrEnum):
    """``CertStatus`` of a SingleResponse (RFC 6960 4.2.1)."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class OCSPRequestError(ValueError):
    """The request cannot be answered with a certificate status: the response is
    ``malformedRequest`` (RFC 6960 2.3). The message says why (never echoes input)."""


@dataclass(frozen=True, slots=True)
class CertID:
    """The certificate a request asks about (RFC 6960 4.1.1).

    Attributes:
        hash_algorithm: the algorithm of both hashes (cryptography's, e.g. SHA1()).
        issuer_name_hash: hash of the issuer's DER-encoded subject name.
        issuer_key_hash: hash of the issuer's subjectPublicKey BIT STRING value.
        serial_number: the certificate's serial number (may be any integer the
            client sent, even zero or negative).
    """

    hash_algorithm: hashes.HashAlgorithm
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A well-formed single-certificate request and its nonce (``None``: no nonce)."""

    cert_id: CertID
    nonce: bytes | None


def load_der_ocsp_request(der: bytes) -> ParsedRequest:
    """Parse a DER ``OCSPRequest`` (RFC 6960 4.1.1).

    Raises:
        OCSPRequestError: see the module docstring (garbage, several requests, an
            unsupported hash, a nonce of 0 or more than 32 octets, too large).
    """
    if not isinstance(der, bytes):
        raise TypeError(f"der must be bytes, got {type(der).__name__}")
    if not der:
        raise OCSPRequestError("empty OCSP request")
    if len(der) > MAX_REQUEST_BYTES:
        raise OCSPRequestError(f"OCSP request over {MAX_REQUEST_BYTES} octets")
    try:
        request = ocsp.load_der_ocsp_request(der)
        algorithm = request.hash_algorithm
        cert_id = CertID(
            hash_algorithm=algorithm,
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
        )
        extensions = request.extensions
    except UnsupportedAlgorithm as exc:
        raise OCSPRequestError("unsupported CertID hash algorithm") from exc
    except (ValueError, NotImplementedError) as exc:
        # ValueError: not DER, not an OCSPRequest, no Request, a bad extension;
        # NotImplementedError: cryptography's answer to a requestList of two or more.
        raise OCSPRequestError("not a DER OCSPRequest with exactly one Request") from exc
    if algorithm.name not in _HASHES:
        raise OCSPRequestError("unsupported CertID hash algorithm")
    nonce: bytes | None = None
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
            if not 1 <= len(nonce) <= MAX_NONCE_BYTES:
                raise OCSPRequestError(f"nonce must be 1 to {MAX_NONCE_BYTES} octets, RFC 8954 2.1")
    return ParsedRequest(cert_id, nonce)


def issuer_key_bits(issuer: x509.Certificate) -> bytes:
    """The value of the issuer's subjectPublicKey BIT STRING (without the unused-bits
    octet): what ``issuerKeyHash`` hashes (RFC 6960 4.1.1)."""
    parsed = asn1_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    bits: bytes = parsed.public_key["public_key"].contents[1:]
    return bits


def issuer_name_der(issuer: x509.Certificate) -> bytes:
    """The issuer's subject Name exactly as encoded in its certificate: what
    ``issuerNameHash`` hashes (RFC 6960 4.1.1)."""
    parsed = asn1_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    name: bytes = parsed["tbs_certificate"]["subject"].dump()
    return name


@functools.lru_cache(maxsize=64)
def issuer_hashes(issuer_der: bytes, algorithm: str) -> tuple[bytes, bytes]:
    """``(issuerNameHash, issuerKeyHash)`` of the DER issuer certificate with hash
    ``algorithm`` (a :data:`hashlib` name), cached: CA certificates never change."""
    issuer = x509.load_der_x509_certificate(issuer_der)
    return (
        hashlib.new(algorithm, issuer_name_der(issuer)).digest(),
        hashlib.new(algorithm, issuer_key_bits(issuer)).digest(),
    )


def matches_issuer(cert_id: CertID, issuer: x509.Certificate | bytes) -> bool:
    """True if ``cert_id`` names ``issuer`` (a certificate or its DER; both hashes
    equal, with the request's algorithm). False means ``unauthorized`` (RFC 6960 2.3)."""
    name = _HASHES.get(cert_id.hash_algorithm.name)
    if name is None:
        return False
    der = issuer if isinstance(issuer, bytes) else issuer.public_bytes(serialization.Encoding.DER)
    name_hash, key_hash = issuer_hashes(der, name)
    return name_hash == cert_id.issuer_name_hash and key_hash == cert_id.issuer_key_hash


@dataclass(frozen=True, slots=True)
class SingleStatus:
    """What a SingleResponse says about one certificate.

    Attributes:
        cert_status: good, revoked or unknown.
        this_update: aware; truncated to whole seconds when signed.
        next_update: aware or ``None`` (no nextUpdate: "newer information is always
            available", RFC 6960 4.2.2.1; used for ``unknown``).
        revocation_time / revocation_reason: for ``revoked`` only; the reason is
            omitted from the response when ``unspecified``.

    Raises:
        ValueError: revocation fields on a status that is not revoked, a revoked
            status without revocation time, or nextUpdate not after thisUpdate.
    """

    cert_status: CertStatus
    this_update: dt.datetime
    next_update: dt.datetime | None
    revocation_time: dt.datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        revoked = self.cert_status is CertStatus.REVOKED
        if revoked != (self.revocation_time is not None):
            raise ValueError("revocationTime is required for revoked and only for revoked")
        if not revoked and self.revocation_reason is not None:
            raise ValueError("revocationReason is only for revoked, RFC 6960 4.2.1")
        if self.next_update is not None and _whole(self.next_update) <= _whole(self.this_update):
            raise ValueError("nextUpdate must be later than thisUpdate, RFC 6960 4.2.2.1")


def _whole(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(microsecond=0)


_CERT_STATUS = {
    CertStatus.GOOD: ocsp.OCSPCertStatus.GOOD,
    CertStatus.REVOKED: ocsp.OCSPCertStatus.REVOKED,
    CertStatus.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
}


def sign_ocsp_response(
    cert_id: CertID,
    status: SingleStatus,
    *,
    responder_certificate: x509.Certificate,
    responder_key: PrivateKey,
    nonce: bytes | None = None,
) -> bytes:
    """A signed, successful ``OCSPResponse`` (DER) with one SingleResponse for
    ``cert_id`` (hashes echoed as the client sent them, RFC 6960 4.2.1).

    Raises:
        ValueError: a nonce outside 1..32 octets.
    """
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        raise ValueError(f"nonce must be 1 to {MAX_NONCE_BYTES} octets, RFC 8954 2.1")
    reason = status.revocation_reason
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=cert_id.issuer_name_hash,
            issuer_key_hash=cert_id.issuer_key_hash,
            serial_number=cert_id.serial_number,
            algorithm=cert_id.hash_algorithm,
            cert_status=_CERT_STATUS[status.cert_status],
            this_update=_whole(status.this_update),
            next_update=_whole(status.next_update) if status.next_update else None,
            revocation_time=_whole(status.revocation_time) if status.revocation_time else None,
            revocation_reason=None if reason is x509.ReasonFlags.unspecified else reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder_certificate)
        .certificates([responder_certificate])
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(responder_key, signature_hash(responder_key))
    return response.public_bytes(serialization.Encoding.DER)


def unsuccessful_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned ``OCSPResponse`` with only ``responseStatus`` (RFC 6960 4.2.1):
    ``malformedRequest``, ``internalError``, ``tryLater`` or ``unauthorized``.

    Raises:
        ValueError: ``status`` is ``successful``.
    """
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )

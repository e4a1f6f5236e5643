"""Fast CRL assembly from pre-encoded entries (RFC 5280 section 5.1).

cryptography's ``CertificateRevocationListBuilder`` re-encodes every entry on each
publication (and ``add_revoked_certificate`` copies its list on every call, which is
quadratic). A CRL is mostly the concatenation of its revokedCertificates entries,
and an entry never changes once written, so ehrca encodes each entry's DER once,
when the certificate is revoked (:func:`encode_crl_entry`), and
:func:`assemble_crl` builds the TBSCertList around their concatenation, signs it
and wraps it. For 1M entries that is one ``b"".join`` plus one signature.

The output is plain DER that cryptography, OpenSSL and pkilint read;
``tests/revocation/test_crl_der.py`` checks it against cryptography's builder
(same entries, same semantics) with hypothesis.

Encodings follow RFC 5280: Time is UTCTime through 2049 and GeneralizedTime from
2050 (4.1.2.5); version v2 (INTEGER 1) because extensions are present (5.1.2.1);
revokedCertificates is omitted when empty (5.1.2.6); crlExtensions is [0] EXPLICIT
and carries the authorityKeyIdentifier (5.2.1) and cRLNumber (5.2.3); entry
extensions carry the reasonCode (absent for unspecified, 5.3.1) and invalidityDate
(always GeneralizedTime, 5.3.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ca.keys import PrivateKey
from ca.profiles import signature_hash

_OID_REASON_CODE = bytes.fromhex("0603551d15")  # 2.5.29.21
_OID_INVALIDITY_DATE = bytes.fromhex("0603551d18")  # 2.5.29.24
_OID_AKI = bytes.fromhex("0603551d23")  # 2.5.29.35
_OID_CRL_NUMBER = bytes.fromhex("0603551d14")  # 2.5.29.20
_OID_IDP = bytes.fromhex("0603551d1c")  # 2.5.29.28
_BOOLEAN_TRUE = bytes.fromhex("0101ff")
_VERSION_V2 = bytes.fromhex("020101")
#: Longest DER header written here: tag, 0x84 and four length octets (X.690 8.1.3.5),
#: enough for any CRL below 4 GiB.
_MAX_HEADER = 6

#: AlgorithmIdentifier DER per (key kind, hash): RFC 5758 3.2 (ECDSA, parameters
#: absent) and RFC 4055 5 (RSA PKCS#1 v1.5, parameters NULL).
_SIGNATURE_ALGORITHMS = {
    ("ec", "sha256"): bytes.fromhex("300a06082a8648ce3d040302"),
    ("ec", "sha384"): bytes.fromhex("300a06082a8648ce3d040303"),
    ("rsa", "sha256"): bytes.fromhex("300d06092a864886f70d01010b0500"),
    ("rsa", "sha384"): bytes.fromhex("300d06092a864886f70d01010c0500"),
}


def der_header(tag: int, length: int) -> bytes:
    """Identifier and definite-length octets for a DER TLV (X.690 8.1.3).

    Raises:
        ValueError: negative length.
    """
    if length < 0:
        raise ValueError("length must not be negative")
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


def der_tlv(tag: int, content: bytes) -> bytes:
    """A complete DER TLV."""
    return der_header(tag, len(content)) + content


def _sequence(*parts: bytes) -> bytes:
    return der_tlv(0x30, b"".join(parts))


def der_integer(value: int) -> bytes:
    """DER INTEGER for a non-negative ``value`` (leading 0x00 when the top bit is set)."""
    if value < 0:
        raise ValueError("only non-negative integers are encoded here")
    content = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return der_tlv(0x02, content)


def der_time(value: dt.datetime) -> bytes:
    """RFC 5280 Time: UTCTime for 1950-2049, GeneralizedTime otherwise; whole seconds, Z.

    Raises:
        ValueError: a naive datetime.
    """
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware UTC")
    value = value.astimezone(dt.UTC)
    if 1950 <= value.year <= 2049:
        return der_tlv(0x17, value.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return der_generalized_time(value)


def der_generalized_time(value: dt.datetime) -> bytes:
    """GeneralizedTime ``YYYYMMDDHHMMSSZ`` (RFC 5280 4.1.2.5.2).

    Raises:
        ValueError: a naive datetime (it would be read as the host's local time).
    """
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware UTC")
    return der_tlv(0x18, value.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def _extension(oid_der: bytes, value_der: bytes, *, critical: bool = False) -> bytes:
    return _sequence(oid_der, _BOOLEAN_TRUE if critical else b"", der_tlv(0x04, value_der))


def encode_crl_entry(
    serial_number: int,
    revocation_date: dt.datetime,
    revocation_reason: x509.ReasonFlags,
    invalidity_date: dt.datetime | None = None,
) -> bytes:
    """DER of one revokedCertificates entry (RFC 5280 5.1.2.6, 5.3.1, 5.3.2).

    Args:
        serial_number: positive, at most 20 octets.
        revocation_date: aware UTC; microseconds are dropped.
        revocation_reason: no reasonCode extension for ``unspecified``;
            ``remove_from_crl`` is refused (ehrca never un-revokes).
        invalidity_date: aware UTC or ``None``.

    Raises:
        ValueError: serial out of range, naive times, or ``remove_from_crl``.
    """
    if not 0 < serial_number < 2**159:
        raise ValueError("serial number must be positive and at most 20 octets, RFC 5280 4.1.2.2")
    if revocation_reason is x509.ReasonFlags.remove_from_crl:
        raise ValueError("removeFromCRL is only for delta CRLs; ehrca does not un-revoke")
    extensions = []
    if revocation_reason is not x509.ReasonFlags.unspecified:
        code = _REASON_CODES[revocation_reason]
        extensions.append(_extension(_OID_REASON_CODE, der_tlv(0x0A, bytes((code,)))))
    if invalidity_date is not None:
        extensions.append(
            _extension(
                _OID_INVALIDITY_DATE, der_generalized_time(invalidity_date.replace(microsecond=0))
            )
        )
    parts = [der_integer(serial_number), der_time(revocation_date.replace(microsecond=0))]
    if extensions:
        parts.append(_sequence(*extensions))
    return _sequence(*parts)


#: CRLReason ENUMERATED values (RFC 5280 5.3.1; 7 is unused).
_REASON_CODES: dict[x509.ReasonFlags, int] = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}


def signature_algorithm_der(key: PrivateKey) -> bytes:
    """The AlgorithmIdentifier DER that :func:`assemble_crl` signs with for ``key``."""
    kind = "ec" if isinstance(key, ec.EllipticCurvePrivateKey) else "rsa"
    return _SIGNATURE_ALGORITHMS[(kind, signature_hash(key).name)]


def _sign(key: PrivateKey, data: bytes | memoryview) -> bytes:
    algorithm = signature_hash(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    assert isinstance(key, rsa.RSAPrivateKey)
    # The RSA stub says bytes; the binding takes any buffer (as the EC one is typed).
    return key.sign(data, padding.PKCS1v15(), algorithm)  # type: ignore[arg-type]


def assemble_crl(
    issuer: x509.Certificate,
    key: PrivateKey,
    entries: Iterable[bytes],
    *,
    crl_number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    issuing_distribution_point: x509.IssuingDistributionPoint | None = None,
) -> bytes:
    """Build and sign a full CRL (DER) from pre-encoded entries.

    The CRL is written into one buffer: room for the (not yet known) length headers,
    then the entries as they come, then crlExtensions; the headers are filled in once
    the length is known, the TBSCertList is signed in place (no copy) and the
    signature appended. Peak memory is about twice the CRL's size (the buffer and the
    returned ``bytes``), however the entries are delivered.

    Args:
        issuer: the CA certificate; its subject bytes become the CRL issuer and its
            SKI the authorityKeyIdentifier.
        key: the CA's private key (EC or RSA; hash as ``ca.profiles.signature_hash``).
        entries: DER entries from :func:`encode_crl_entry`, in the order to list them;
            each item may also be several entries already concatenated (e.g. one
            database fetch), consumed once, as it comes.
        issuing_distribution_point: for partitioned CRLs (RFC 5280 5.2.5, critical).

    Returns:
        The DER CertificateList.

    Raises:
        ValueError: CRL number not positive or above 20 octets, nextUpdate not after
            thisUpdate, naive times, entries of 4 GiB or more.
    """
    if not 0 < crl_number < 2**159:
        raise ValueError("CRL number must be positive and at most 20 octets, RFC 5280 5.2.3")
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate, RFC 5280 5.1.2.5")
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki_value = _sequence(der_tlv(0x80, ski))
    extensions = [
        _extension(_OID_AKI, aki_value),
        _extension(_OID_CRL_NUMBER, der_integer(crl_number)),
    ]
    if issuing_distribution_point is not None:
        extensions.append(
            _extension(_OID_IDP, issuing_distribution_point.public_bytes(), critical=True)
        )
    algorithm = signature_algorithm_der(key)
    head = b"".join(
        (
            _VERSION_V2,
            algorithm,
            issuer_name_der(issuer),
            der_time(this_update.replace(microsecond=0)),
            der_time(next_update.replace(microsecond=0)),
        )
    )
    tail = der_tlv(0xA0, _sequence(*extensions))
    # Layout: [room for CertificateList header, TBSCertList header, head and the
    # revokedCertificates header] entries... tail algorithm signature. The headers are
    # right-aligned against the entries once their lengths are known.
    reserved = 3 * _MAX_HEADER + len(head)
    buffer = bytearray(reserved)
    for chunk in entries:
        buffer += chunk
    revoked_length = len(buffer) - reserved
    if revoked_length >= 2**32 - 2**16:
        raise ValueError("a CRL of 4 GiB or more is not supported; partition it")
    buffer += tail
    revoked_header = der_header(0x30, revoked_length) if revoked_length else b""
    tbs_length = len(head) + len(revoked_header) + revoked_length + len(tail)
    tbs_header = der_header(0x30, tbs_length)
    tbs_start = reserved - len(revoked_header) - len(head) - len(tbs_header)
    buffer[tbs_start:reserved] = tbs_header + head + revoked_header
    tbs_end = len(buffer)
    with memoryview(buffer) as view, view[tbs_start:tbs_end] as tbs:
        signature = der_tlv(0x03, b"\x00" + _sign(key, tbs))
    buffer += algorithm
    buffer += signature
    outer_header = der_header(0x30, tbs_end - tbs_start + len(algorithm) + len(signature))
    start = tbs_start - len(outer_header)
    buffer[start:tbs_start] = outer_header
    del buffer[:start]  # O(1) at the front of a bytearray
    crl = bytes(buffer)
    del buffer
    return crl


def issuer_name_der(issuer: x509.Certificate) -> bytes:
    """The issuer certificate's subject exactly as encoded in it (RFC 5280 5.1.2.3:
    the CRL issuer must match byte for byte), taken from the DER with asn1crypto."""
    parsed = asn1_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
    subject: bytes = parsed["tbs_certificate"]["subject"].dump()
    return subject

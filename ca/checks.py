"""The named checks of the issuance pipeline.

``ca.service.issue_certificate`` runs a fixed pipeline, as step-ca's
``authority/tls.go`` (CSR validators → modifiers → certificate validators) and
Boulder's ``ca/`` (lint before signing, record intent) do:

    request checks → build → certificate checks → lint → reserve → sign → store

Every check here is a tiny pure function that raises :class:`CheckFailed` with a
message naming the rule it enforces; :func:`run_request_checks` and
:func:`run_certificate_checks` turn that into :class:`CheckRefused`, whose ``check``
is the function's name, so the name appears in the error (``certificate check
check_issuer_name_copied failed: ...``) and in the audit trail.

Request checks look at what is about to be certified (issuer, key, names, serial,
profile); certificate checks look at the DER of the built certificate (signed with a
throwaway key of the issuer's type, so its TBS is the one that will be signed) and
enforce the RFC 5280 rules this CA promises for every certificate:

- issuer name byte-identical to the issuer certificate's subject (4.1.2.4);
- authorityKeyIdentifier = the issuer's subjectKeyIdentifier bytes (4.2.1.1) and
  subjectKeyIdentifier = SHA-1 of the subjectPublicKey BIT STRING (4.2.1.2, method 1);
- validity inside the issuer's, times in UTCTime through 2049 and GeneralizedTime
  from 2050 (4.1.2.5);
- subject countryName and serialNumber as PrintableString, every other attribute as
  UTF8String (4.1.2.6, 4.1.2.4 "MUST use ... UTF8String" for new certificates);
- basicConstraints, keyUsage and extendedKeyUsage exactly as the profile says, and no
  extension the profile does not call for (nothing from a CSR leaks in);
- the certified key is the requested key; the serial is a positive DER INTEGER of at
  most 20 octets (4.1.2.2).

Sources: RFC 5280 sections 4.1 and 4.2; step-ca ``authority/provisioner`` validators;
Boulder ``ca/ca.go`` (issuePrecertificateInner) and ``linter/``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asn1crypto.keys
import asn1crypto.x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from ca.errors import DomainError, ErrorCategory
from ca.keys import PublicKey
from ca.profiles import KEY_USAGE_NAMES, Issuer, Profile, general_names

#: Smallest and largest RSA modulus the CA certifies (bits; NIST SP 800-57 part 1, 5.6.1).
RSA_MIN_BITS: Final = 2048
RSA_MAX_BITS: Final = 8192
RSA_EXPONENT: Final = 65537
#: Curves the CA certifies (RFC 5480 2.1.1.1 named curves).
ALLOWED_CURVES: Final = frozenset({"secp256r1", "secp384r1"})
#: Serial numbers are positive and at most 20 octets (RFC 5280 4.1.2.2); ehrca uses 159 bits.
SERIAL_MAX: Final = 2**159 - 1
#: Subject attributes encoded as PrintableString (countryName, serialNumber, X.520);
#: every other attribute is a UTF8String (RFC 5280 4.1.2.6 and 4.1.2.4).
PRINTABLE_ATTRIBUTES: Final = frozenset({"2.5.4.6", "2.5.4.5"})
PRINTABLE_STRING_TAG: Final = 0x13
UTF8_STRING_TAG: Final = 0x0C
#: RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
GENERALIZED_TIME_FROM_YEAR: Final = 2050
UTC_TIME_TAG: Final = 0x17
GENERALIZED_TIME_TAG: Final = 0x18


class CheckFailed(ValueError):
    """Raised by one check; the message names the rule that failed."""


class CheckRefused(DomainError):
    """A pipeline check refused the certificate; nothing was reserved or signed.

    Attributes:
        stage: ``"request"`` or ``"certificate"``.
        check: the name of the check function that refused.
    """

    code = "certificate_check_failed"
    category = ErrorCategory.INVALID

    def __init__(self, stage: str, check: str, reason: str) -> None:
        code = "certificate_request_refused" if stage == "request" else None
        super().__init__(
            f"{stage} check {check} failed: {reason}", code=code, stage=stage, check=check
        )
        self.stage = stage
        self.check = check


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """What the pipeline is asked to certify (the CA's view; a CSR never gets here).

    Attributes:
        not_valid_before: aware datetime; the builder truncates it to whole seconds UTC.
        subject_alt_names: see :func:`ca.profiles.general_names`.
    """

    profile: Profile
    issuer: Issuer
    subject: x509.Name
    public_key: PublicKey
    serial_number: int
    not_valid_before: dt.datetime
    subject_alt_names: tuple[str, ...] = ()


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The DER element at ``data[pos:end]``: ``(tag, content start, content end)``.

    Only what X.690 DER allows for the TBSCertificate's top-level fields: a low tag
    number (one octet), a definite length in the fewest octets (short form below 128,
    no leading zero octet in the long form), inside ``end``.

    Raises:
        CheckFailed: any other encoding (an encoding bug of the builder).
    """
    if pos + 2 > end:
        raise CheckFailed("truncated DER element in the TBSCertificate")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise CheckFailed("unexpected high-tag-number DER element in the TBSCertificate")
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > end or data[start] == 0:
            raise CheckFailed("non-DER length in the TBSCertificate (X.690 10.1)")
        length = int.from_bytes(data[start : start + count], "big")
        if length < 0x80:
            raise CheckFailed("non-DER length in the TBSCertificate (X.690 10.1)")
        start += count
    if start + length > end:
        raise CheckFailed("truncated DER element in the TBSCertificate")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements inside ``data[start:end]``: ``(tag, element start, content start,
    content end)`` each."""
    out = []
    pos = start
    while pos < end:
        tag, content, after = _tlv(data, pos, end)
        out.append((tag, pos, content, after))
        pos = after
    return out


def _dotted(oid: bytes) -> str:
    """An OBJECT IDENTIFIER's content octets as dotted text (X.690 8.19)."""
    arcs: list[int] = []
    value = 0
    for octet in oid:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return ""
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


@dataclass(frozen=True, slots=True)
class TBSFields:
    """The encoded TBSCertificate fields the encoding-level checks read (RFC 5280 4.1),
    located by a strict DER walk over ``tbs_certificate_bytes`` (:func:`_tlv`) instead
    of a full asn1crypto parse of the certificate.

    Attributes:
        issuer: the issuer Name element (tag, length, content), as encoded.
        serial_contents: the serialNumber INTEGER's content octets.
        times: ``(tag, content)`` of notBefore and notAfter (0x17 UTCTime, 0x18
            GeneralizedTime).
        subject_values: ``(attribute type OID dotted, value tag)`` of each subject
            AttributeTypeAndValue, in order.
        spki: the SubjectPublicKeyInfo element, as encoded.
        public_key_bits: the subjectPublicKey BIT STRING's content octets (the first is
            the count of unused bits).
    """

    issuer: bytes
    serial_contents: bytes
    times: tuple[tuple[int, bytes], tuple[int, bytes]]
    subject_values: tuple[tuple[str, int], ...]
    spki: bytes
    public_key_bits: bytes

    @classmethod
    def parse(cls, tbs: bytes) -> TBSFields:
        """Walk ``tbs`` (a DER TBSCertificate).

        Raises:
            CheckFailed: not a DER TBSCertificate of the RFC 5280 4.1 shape.
        """
        tag, start, end = _tlv(tbs, 0, len(tbs))
        if tag != 0x30 or end != len(tbs):
            raise CheckFailed("the TBSCertificate is not one DER SEQUENCE")
        fields = _children(tbs, start, end)
        if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
            fields = fields[1:]
        if len(fields) < 6:
            raise CheckFailed("the TBSCertificate lacks required fields, RFC 5280 4.1")
        serial, _algorithm, issuer, validity, subject, spki = fields[:6]
        expected_tags = (0x02, 0x30, 0x30, 0x30, 0x30, 0x30)
        if tuple(f[0] for f in fields[:6]) != expected_tags:
            raise CheckFailed("the TBSCertificate fields are not in RFC 5280 4.1 order")
        times = _children(tbs, validity[2], validity[3])
        if len(times) != 2:
            raise CheckFailed("validity must hold notBefore and notAfter, RFC 5280 4.1.2.5")
        values: list[tuple[str, int]] = []
        for rdn_tag, _, rdn_start, rdn_end in _children(tbs, subject[2], subject[3]):
            if rdn_tag != 0x31:
                raise CheckFailed("a subject RDN is not a SET, RFC 5280 4.1.2.6")
            for atv_tag, _, atv_start, atv_end in _children(tbs, rdn_start, rdn_end):
                parts = _children(tbs, atv_start, atv_end)
                if atv_tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                    raise CheckFailed("a subject attribute is not (type, value), RFC 5280 4.1.2.4")
                values.append((_dotted(tbs[parts[0][2] : parts[0][3]]), parts[1][0]))
        key_parts = _children(tbs, spki[2], spki[3])
        if len(key_parts) != 2 or key_parts[1][0] != 0x03:
            raise CheckFailed("the SubjectPublicKeyInfo is not (algorithm, BIT STRING)")
        return cls(
            issuer=tbs[issuer[1] : issuer[3]],
            serial_contents=tbs[serial[2] : serial[3]],
            times=(
                (times[0][0], tbs[times[0][2] : times[0][3]]),
                (times[1][0], tbs[times[1][2] : times[1][3]]),
            ),
            subject_values=tuple(values),
            spki=tbs[spki[1] : spki[3]],
            public_key_bits=tbs[key_parts[1][2] : key_parts[1][3]],
        )


@dataclass(frozen=True)
class BuiltCertificate:
    """A built certificate (throwaway-signed) as the certificate checks see it.

    Which checks read what: the encoding-level checks (issuer bytes, subject string
    tags, time types, serial octets, SKI over the BIT STRING, certified SPKI) read the
    encoded TBSCertificate through :attr:`fields` (a strict DER walk of the bytes
    that are signed); the extension checks read cryptography's parse of the same DER.
    Nothing is taken from the builder's inputs.

    Attributes:
        certificate: parsed by cryptography.
        fields: :class:`TBSFields` of ``certificate.tbs_certificate_bytes``.
    """

    certificate: x509.Certificate
    fields: TBSFields

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> BuiltCertificate:
        """Wrap ``certificate`` (walks its TBSCertificate once).

        Raises:
            CheckFailed: the TBSCertificate is not DER of the RFC 5280 4.1 shape.
        """
        return cls(certificate, TBSFields.parse(certificate.tbs_certificate_bytes))

    @functools.cached_property
    def der(self) -> bytes:
        """The certificate's DER encoding."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @functools.cached_property
    def asn1(self) -> Any:
        """The certificate parsed by asn1crypto (for tests and diagnostics only)."""
        return asn1crypto.x509.Certificate.load(self.der)

    @property
    def tbs(self) -> Any:
        """The asn1crypto ``tbs_certificate`` (for tests and diagnostics only)."""
        return self.asn1["tbs_certificate"]


@functools.lru_cache(maxsize=16)
def _subject_bytes(issuer: x509.Certificate) -> bytes:
    """An issuer certificate's subject Name element as encoded in its own TBS (the
    issuing CA changes rarely: cached by certificate, which hashes by its DER)."""
    tbs = issuer.tbs_certificate_bytes
    _tag, start, end = _tlv(tbs, 0, len(tbs))
    fields = _children(tbs, start, end)
    if fields and fields[0][0] == 0xA0:
        fields = fields[1:]
    if len(fields) < 6 or fields[4][0] != 0x30:
        raise CheckFailed("the issuer certificate's TBSCertificate has no subject Name")
    subject = fields[4]
    return tbs[subject[1] : subject[3]]


RequestCheck = Callable[[CertificateRequest], None]
CertificateCheck = Callable[[CertificateRequest, BuiltCertificate], None]


def _extension(certificate: x509.Certificate, kind: type[Any]) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


# --------------------------------------------------------------------------- request checks


def check_issuer_is_ca(request: CertificateRequest) -> None:
    """The issuer certificate asserts basicConstraints cA and keyUsage keyCertSign
    (RFC 5280 4.2.1.9, 4.2.1.3)."""
    bc = _extension(request.issuer.certificate, x509.BasicConstraints)
    if bc is None or not bc.value.ca:
        raise CheckFailed(
            "the issuer certificate is not a CA (basicConstraints cA), RFC 5280 4.2.1.9"
        )
    ku = _extension(request.issuer.certificate, x509.KeyUsage)
    if ku is None or not ku.value.key_cert_sign:
        raise CheckFailed("the issuer certificate lacks keyUsage keyCertSign, RFC 5280 4.2.1.3")


def check_issuer_valid_at_start(request: CertificateRequest) -> None:
    """The issuer is valid at notBefore: ``issuer.notBefore <= start < issuer.notAfter``
    (a certificate never starts outside its issuer's validity, RFC 5280 6.1.3 (a)(2))."""
    start = request.not_valid_before.astimezone(dt.UTC).replace(microsecond=0)
    issuer = request.issuer.certificate
    if start < issuer.not_valid_before_utc:
        raise CheckFailed(
            f"the issuer certificate is not valid before {issuer.not_valid_before_utc}"
        )
    if start >= issuer.not_valid_after_utc:
        raise CheckFailed(f"the issuer certificate expired at {issuer.not_valid_after_utc}")


def check_issuer_allows_profile(request: CertificateRequest) -> None:
    """A CA certificate is not issued below a CA with pathLenConstraint 0 (RFC 5280 4.2.1.9)."""
    if not request.profile.is_ca:
        return
    bc = _extension(request.issuer.certificate, x509.BasicConstraints)
    if bc is not None and bc.value.path_length == 0:
        raise CheckFailed(
            "the issuer has pathLenConstraint 0 and cannot certify a CA, RFC 5280 4.2.1.9"
        )


def check_public_key_allowed(request: CertificateRequest) -> None:
    """RSA 2048-8192 bits with e = 65537, or EC on P-256/P-384 (NIST SP 800-57 part 1,
    SP 800-89 5.3.3, RFC 5480); the CSR policy in ``issuance.csr`` is applied before."""
    key = request.public_key
    if isinstance(key, rsa.RSAPublicKey):
        if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
            raise CheckFailed(
                f"RSA keys must have {RSA_MIN_BITS} to {RSA_MAX_BITS} bits (got {key.key_size})"
            )
        if key.public_numbers().e != RSA_EXPONENT:
            raise CheckFailed("RSA public exponent must be 65537")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise CheckFailed(f"EC keys must be on P-256 or P-384 (got {key.curve.name})")
        return
    raise CheckFailed(f"unsupported public key type {type(key).__name__}")


def check_subject_present(request: CertificateRequest) -> None:
    """A non-empty subject, or subjectAltNames to name the subject (RFC 5280 4.1.2.6)."""
    if len(request.subject) == 0 and not request.subject_alt_names:
        raise CheckFailed("the subject is empty and there is no subjectAltName, RFC 5280 4.1.2.6")


def check_serial_number_range(request: CertificateRequest) -> None:
    """``1 <= serial <= 2**159 - 1`` (positive, at most 20 octets, RFC 5280 4.1.2.2)."""
    if not 1 <= request.serial_number <= SERIAL_MAX:
        raise CheckFailed("serial number must be positive and at most 159 bits, RFC 5280 4.1.2.2")


def check_subject_alt_names(request: CertificateRequest) -> None:
    """Every subjectAltName parses: an IP literal, an absolute ``http(s):``/``urn:`` URI
    or a DNS name (RFC 5280 4.2.1.6)."""
    try:
        general_names(request.subject_alt_names)
    except ValueError as exc:
        raise CheckFailed(f"a subjectAltName is not valid: {exc}") from exc


REQUEST_CHECKS: Final[tuple[RequestCheck, ...]] = (
    check_issuer_is_ca,
    check_issuer_valid_at_start,
    check_issuer_allows_profile,
    check_public_key_allowed,
    check_subject_present,
    check_serial_number_range,
    check_subject_alt_names,
)


# --------------------------------------------------------------------------- certificate checks


def check_issuer_name_copied(request: CertificateRequest, built: BuiltCertificate) -> None:
    """The issuer field is byte-identical to the issuer certificate's subject (RFC 5280
    4.1.2.4: name chaining compares them, so it is copied, never re-encoded)."""
    if built.fields.issuer != _subject_bytes(request.issuer.certificate):
        raise CheckFailed("the issuer name differs from the issuer certificate's subject bytes")


def check_authority_key_identifier(request: CertificateRequest, built: BuiltCertificate) -> None:
    """authorityKeyIdentifier carries exactly the issuer's subjectKeyIdentifier bytes
    (RFC 5280 4.2.1.1), without authorityCertIssuer/SerialNumber."""
    aki = _extension(built.certificate, x509.AuthorityKeyIdentifier)
    if aki is None or aki.critical:
        raise CheckFailed(
            "authorityKeyIdentifier must be present and non-critical, RFC 5280 4.2.1.1"
        )
    if aki.value.key_identifier != request.issuer.subject_key_identifier:
        raise CheckFailed("authorityKeyIdentifier differs from the issuer's subjectKeyIdentifier")
    if (
        aki.value.authority_cert_issuer is not None
        or aki.value.authority_cert_serial_number is not None
    ):
        raise CheckFailed("authorityKeyIdentifier must carry only keyIdentifier")


def check_subject_key_identifier(request: CertificateRequest, built: BuiltCertificate) -> None:
    """subjectKeyIdentifier = SHA-1 of the subjectPublicKey BIT STRING value (RFC 5280
    4.2.1.2, method 1), non-critical."""
    ski = _extension(built.certificate, x509.SubjectKeyIdentifier)
    if ski is None or ski.critical:
        raise CheckFailed("subjectKeyIdentifier must be present and non-critical, RFC 5280 4.2.1.2")
    bits = built.fields.public_key_bits
    expected = hashlib.sha1(bits[1:]).digest()  # noqa: S324 - RFC 5280 4.2.1.2 method 1
    if ski.value.digest != expected:
        raise CheckFailed(
            "subjectKeyIdentifier is not the SHA-1 of the subjectPublicKey (method 1)"
        )


def check_validity_inside_issuer(request: CertificateRequest, built: BuiltCertificate) -> None:
    """``issuer.notBefore <= notBefore <= notAfter <= issuer.notAfter`` (RFC 5280 4.1.2.5)."""
    cert, issuer = built.certificate, request.issuer.certificate
    if not cert.not_valid_before_utc <= cert.not_valid_after_utc:
        raise CheckFailed("notBefore is after notAfter")
    if cert.not_valid_before_utc < issuer.not_valid_before_utc:
        raise CheckFailed("notBefore is before the issuer's notBefore")
    if cert.not_valid_after_utc > issuer.not_valid_after_utc:
        raise CheckFailed("notAfter is after the issuer's notAfter")


def _time_year(tag: int, text: bytes) -> int:
    """The year of an encoded Time: UTCTime ``YYMMDDHHMMSSZ`` (YY 50-99 is 19YY, 00-49
    20YY, RFC 5280 4.1.2.5.1) or GeneralizedTime ``YYYYMMDDHHMMSSZ`` (4.1.2.5.2).

    Raises:
        CheckFailed: another tag, or not the RFC 5280 form (digits, ``Z``).
    """
    size = {UTC_TIME_TAG: 13, GENERALIZED_TIME_TAG: 15}.get(tag)
    if size is None or len(text) != size or text[-1:] != b"Z" or not text[:-1].isdigit():
        raise CheckFailed("a validity time is not UTCTime or GeneralizedTime in Zulu, 4.1.2.5")
    if tag == GENERALIZED_TIME_TAG:
        return int(text[:4])
    short = int(text[:2])
    return 1900 + short if short >= 50 else 2000 + short


def check_time_encoding(request: CertificateRequest, built: BuiltCertificate) -> None:
    """UTCTime for years through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5)."""
    for name, (tag, text) in zip(("not_before", "not_after"), built.fields.times, strict=True):
        year = _time_year(tag, text)
        expected = "general_time" if year >= GENERALIZED_TIME_FROM_YEAR else "utc_time"
        actual = "general_time" if tag == GENERALIZED_TIME_TAG else "utc_time"
        if actual != expected:
            raise CheckFailed(f"{name} in {year} must be {expected}, RFC 5280 4.1.2.5")


def check_subject_string_types(request: CertificateRequest, built: BuiltCertificate) -> None:
    """countryName and serialNumber are PrintableString, every other subject attribute
    UTF8String (RFC 5280 4.1.2.6; 4.1.2.4 asks for UTF8String in new certificates)."""
    for oid, tag in built.fields.subject_values:
        expected = PRINTABLE_STRING_TAG if oid in PRINTABLE_ATTRIBUTES else UTF8_STRING_TAG
        if tag != expected:
            kind = "PrintableString" if expected == PRINTABLE_STRING_TAG else "UTF8String"
            raise CheckFailed(f"subject attribute {oid} must be a {kind}")


def check_basic_constraints(request: CertificateRequest, built: BuiltCertificate) -> None:
    """basicConstraints critical, cA and pathLenConstraint as the profile says (4.2.1.9)."""
    bc = _extension(built.certificate, x509.BasicConstraints)
    profile = request.profile
    if bc is None or not bc.critical:
        raise CheckFailed("basicConstraints must be present and critical")
    if bc.value.ca != profile.is_ca:
        raise CheckFailed(f"basicConstraints cA must be {profile.is_ca} for profile {profile.name}")
    if bc.value.path_length != (profile.path_length if profile.is_ca else None):
        raise CheckFailed("pathLenConstraint differs from the profile")


def check_key_usage(request: CertificateRequest, built: BuiltCertificate) -> None:
    """keyUsage critical with exactly the profile's usages (RFC 5280 4.2.1.3)."""
    ku = _extension(built.certificate, x509.KeyUsage)
    if ku is None or not ku.critical:
        raise CheckFailed("keyUsage must be present and critical")
    asserted = {name for name in KEY_USAGE_NAMES if getattr(ku.value, name)}
    if asserted != set(request.profile.key_usage):
        raise CheckFailed(f"keyUsage {sorted(asserted)} differs from the profile's")


def check_extended_key_usage(request: CertificateRequest, built: BuiltCertificate) -> None:
    """extendedKeyUsage exactly the profile's purposes, or absent when it has none (4.2.1.12)."""
    eku = _extension(built.certificate, x509.ExtendedKeyUsage)
    expected = list(request.profile.extended_key_usage)
    actual = [] if eku is None else list(eku.value)
    if actual != expected:
        raise CheckFailed("extendedKeyUsage differs from the profile's")


def check_public_key_matches(request: CertificateRequest, built: BuiltCertificate) -> None:
    """The certified SubjectPublicKeyInfo, as encoded, is the requested key's DER
    SubjectPublicKeyInfo (RFC 5280 4.1.2.7)."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if built.fields.spki != request.public_key.public_bytes(serialization.Encoding.DER, spki):
        raise CheckFailed("the certified public key is not the requested one")


def check_serial_number_encoding(request: CertificateRequest, built: BuiltCertificate) -> None:
    """The serial is the requested one, positive, at most 20 content octets (4.1.2.2)."""
    contents = built.fields.serial_contents
    value = int.from_bytes(contents, "big", signed=True)
    # X.690 8.3.2: no leading 0x00 before a clear high bit, no 0xFF before a set one.
    minimal = len(contents) == 1 or (
        len(contents) > 1
        and not (contents[0] == 0 and contents[1] < 0x80)
        and not (contents[0] == 0xFF and contents[1] >= 0x80)
    )
    if value != request.serial_number or value <= 0 or len(contents) > 20 or not minimal:
        raise CheckFailed("serial number must be positive and at most 20 octets, RFC 5280 4.1.2.2")


def expected_extensions(request: CertificateRequest) -> frozenset[x509.ObjectIdentifier]:
    """The extension OIDs a certificate built from ``request`` carries, and no other."""
    profile = request.profile
    oids = {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
    if profile.extended_key_usage:
        oids.add(ExtensionOID.EXTENDED_KEY_USAGE)
    if request.subject_alt_names:
        oids.add(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if profile.certificate_policy is not None:
        oids.add(ExtensionOID.CERTIFICATE_POLICIES)
    if profile.ocsp_no_check:
        oids.add(ExtensionOID.OCSP_NO_CHECK)
    if profile.revocation_pointers:
        oids.update(
            {ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.AUTHORITY_INFORMATION_ACCESS}
        )
    return frozenset(oids)


def check_extension_set(request: CertificateRequest, built: BuiltCertificate) -> None:
    """Exactly the extensions the profile calls for (nothing from a CSR or elsewhere)."""
    actual = {e.oid for e in built.certificate.extensions}
    expected = expected_extensions(request)
    if actual != expected:
        extra = sorted(o.dotted_string for o in actual - expected)
        missing = sorted(o.dotted_string for o in expected - actual)
        raise CheckFailed(f"extensions differ from the profile: extra {extra}, missing {missing}")


CERTIFICATE_CHECKS: Final[tuple[CertificateCheck, ...]] = (
    check_issuer_name_copied,
    check_authority_key_identifier,
    check_subject_key_identifier,
    check_validity_inside_issuer,
    check_time_encoding,
    check_subject_string_types,
    check_basic_constraints,
    check_key_usage,
    check_extended_key_usage,
    check_public_key_matches,
    check_serial_number_encoding,
    check_extension_set,
)


def run_request_checks(
    request: CertificateRequest, checks: Sequence[RequestCheck] = REQUEST_CHECKS
) -> None:
    """Run ``checks`` in order.

    Raises:
        CheckRefused: code ``certificate_request_refused``, naming the first failing check.
    """
    for check in checks:
        try:
            check(request)
        except CheckFailed as exc:
            raise CheckRefused("request", check.__name__, str(exc)) from exc


def run_certificate_checks(
    request: CertificateRequest,
    certificate: x509.Certificate,
    checks: Sequence[CertificateCheck] = CERTIFICATE_CHECKS,
) -> None:
    """Run ``checks`` in order over the built ``certificate``.

    Raises:
        CheckRefused: code ``certificate_check_failed``, naming the first failing check.
    """
    built = BuiltCertificate.from_certificate(certificate)
    for check in checks:
        try:
            check(request, built)
        except CheckFailed as exc:
            raise CheckRefused("certificate", check.__name__, str(exc)) from exc

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
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class BuiltCertificate:
    """A built certificate (throwaway-signed) as the certificate checks see it.

    Attributes:
        certificate: parsed by cryptography.
        der: its DER encoding.
        asn1: parsed by asn1crypto, for the encoding-level checks (string and time tags).
    """

    certificate: x509.Certificate
    der: bytes
    asn1: Any = field(repr=False)

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> BuiltCertificate:
        """Wrap ``certificate`` (parses its DER once with asn1crypto)."""
        der = certificate.public_bytes(serialization.Encoding.DER)
        return cls(certificate, der, asn1crypto.x509.Certificate.load(der))

    @property
    def tbs(self) -> Any:
        """The asn1crypto ``tbs_certificate``."""
        return self.asn1["tbs_certificate"]


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
    issuer_subject = asn1crypto.x509.Certificate.load(
        request.issuer.certificate.public_bytes(serialization.Encoding.DER)
    )["tbs_certificate"]["subject"].dump()
    if built.tbs["issuer"].dump() != issuer_subject:
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
    bits: bytes = built.tbs["subject_public_key_info"]["public_key"].contents
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


def check_time_encoding(request: CertificateRequest, built: BuiltCertificate) -> None:
    """UTCTime for years through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5)."""
    for name in ("not_before", "not_after"):
        time = built.tbs["validity"][name]
        year = time.native.year
        expected = "general_time" if year >= GENERALIZED_TIME_FROM_YEAR else "utc_time"
        if time.name != expected:
            raise CheckFailed(f"{name} in {year} must be {expected}, RFC 5280 4.1.2.5")


def check_subject_string_types(request: CertificateRequest, built: BuiltCertificate) -> None:
    """countryName and serialNumber are PrintableString, every other subject attribute
    UTF8String (RFC 5280 4.1.2.6; 4.1.2.4 asks for UTF8String in new certificates)."""
    for rdn in built.tbs["subject"].chosen:
        for atv in rdn:
            oid = atv["type"].dotted
            tag = atv["value"].dump()[0]
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
    """The certified SubjectPublicKeyInfo is the requested key's."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if built.certificate.public_key().public_bytes(der, spki) != request.public_key.public_bytes(
        der, spki
    ):
        raise CheckFailed("the certified public key is not the requested one")


def check_serial_number_encoding(request: CertificateRequest, built: BuiltCertificate) -> None:
    """The serial is the requested one, positive, at most 20 content octets (4.1.2.2)."""
    serial = built.tbs["serial_number"]
    if serial.native != request.serial_number or serial.native <= 0 or len(serial.contents) > 20:
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

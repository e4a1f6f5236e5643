"""Certificate profiles as data, and the pure builder that turns one into a certificate.

A :class:`Profile` says what a kind of certificate looks like (CA or end entity,
key usages, extended key usages, which pointers it carries, lifetime); the
:func:`build_certificate` function combines a profile with an issuer, a subject and
a public key. Nothing here signs: see :func:`sign_certificate`.

Rules applied to every certificate (RFC 5280 section 4):
- issuer name copied from the issuer certificate's subject, never rebuilt (4.1.2.4);
- authorityKeyIdentifier = the issuer's subjectKeyIdentifier bytes (4.2.1.1);
- subjectKeyIdentifier = SHA-1 of the subjectPublicKey BIT STRING, method 1 (4.2.1.2);
- notAfter inclusive (4.1.2.5): ``not_valid_before + validity - 1 s``, capped by the
  issuer's notAfter;
- CRL distribution point and AIA over plain HTTP for everything below the root.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.config import PkiUrls
from ca.keys import PrivateKey, PublicKey

#: X.520 upper bound for O, OU and CN (RFC 5280 Appendix A, ub-organization-name etc.).
NAME_ATTRIBUTE_MAX = 64

KEY_USAGE_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


@dataclass(frozen=True, slots=True)
class Profile:
    """What one kind of certificate looks like.

    Attributes:
        name: profile identifier stored with each certificate (``client``, ``mtls_server``...).
        validity: lifetime (``timedelta``), capped by the issuer's notAfter.
        is_ca: basicConstraints cA; ``path_length`` applies only when ``is_ca``.
        key_usage: names from :data:`KEY_USAGE_NAMES` that are asserted (critical).
        extended_key_usage: EKU OIDs (non-critical); empty means no extension.
        revocation_pointers: write CRL distribution point and AIA (false for the root).
        ocsp_pointer: add the OCSP URL to AIA (only when the issuer runs a responder).
        certificate_policy: OID written into certificatePolicies (``None``: no extension).
        ocsp_no_check: add id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1), for delegated
            OCSP responder certificates.

    Raises:
        ValueError: for an unknown key usage name, a CA without keyCertSign, or an end
            entity with keyCertSign (RFC 5280 4.2.1.3, 4.2.1.9).
    """

    name: str
    validity: dt.timedelta
    is_ca: bool
    key_usage: frozenset[str]
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = ()
    path_length: int | None = None
    revocation_pointers: bool = True
    ocsp_pointer: bool = False
    certificate_policy: x509.ObjectIdentifier | None = None
    ocsp_no_check: bool = False

    def __post_init__(self) -> None:
        unknown = self.key_usage - set(KEY_USAGE_NAMES)
        if unknown:
            raise ValueError(f"profile {self.name}: unknown key usages {sorted(unknown)}")
        if self.is_ca != ("key_cert_sign" in self.key_usage):
            raise ValueError(
                f"profile {self.name}: keyCertSign must be set exactly for CA certificates, "
                "RFC 5280 4.2.1.3"
            )
        if self.validity < dt.timedelta(seconds=1) or self.validity.microseconds:
            raise ValueError(
                f"profile {self.name}: validity must be positive whole seconds "
                "(X.509 times have no fractions, RFC 5280 4.1.2.5)"
            )


def root_profile(validity: dt.timedelta) -> Profile:
    """Self-signed root CA: keyCertSign + cRLSign, no pointers (it is the trust anchor)."""
    return Profile(
        name="root_ca",
        validity=validity,
        is_ca=True,
        key_usage=frozenset({"key_cert_sign", "crl_sign"}),
        revocation_pointers=False,
    )


def issuing_ca_profile(validity: dt.timedelta) -> Profile:
    """Online issuing CA below the root: pathLenConstraint 0, pointers to the root's CRL."""
    return Profile(
        name="issuing_ca",
        validity=validity,
        is_ca=True,
        path_length=0,
        key_usage=frozenset({"key_cert_sign", "crl_sign", "digital_signature"}),
    )


def client_profile(validity: dt.timedelta, *, policy_oid: str, ocsp: bool = False) -> Profile:
    """Secure connection certificate of one service location (TLS client authentication)."""
    return Profile(
        name="client",
        validity=validity,
        is_ca=False,
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        ocsp_pointer=ocsp,
        certificate_policy=x509.ObjectIdentifier(policy_oid),
    )


def server_profile(validity: dt.timedelta, *, ocsp: bool = False) -> Profile:
    """The mTLS listener's TLS server certificate."""
    return Profile(
        name="mtls_server",
        validity=validity,
        is_ca=False,
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
        ocsp_pointer=ocsp,
    )


@dataclass(frozen=True, slots=True)
class Issuer:
    """What a builder needs from the issuing CA: its certificate and its name in URLs."""

    certificate: x509.Certificate
    ca_name: str

    @property
    def subject_key_identifier(self) -> bytes:
        """The issuer's SKI bytes (RFC 5280 4.2.1.2); raises ``ExtensionNotFound`` if absent."""
        ext = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ext.value.digest


def validity_window(
    profile: Profile, not_valid_before: dt.datetime, issuer: Issuer | None
) -> tuple[dt.datetime, dt.datetime]:
    """Return ``(not_valid_before, not_valid_after)`` for ``profile``.

    Times are whole seconds, aware UTC; notAfter is inclusive (RFC 5280 4.1.2.5) and
    capped by the issuer's notAfter.

    Raises:
        ValueError: for a naive ``not_valid_before`` or one at/after the issuer's notAfter.
    """
    if not_valid_before.tzinfo is None:
        raise ValueError("not_valid_before must be timezone-aware UTC")
    start = not_valid_before.astimezone(dt.UTC).replace(microsecond=0)
    end = start + profile.validity - dt.timedelta(seconds=1)
    if issuer is not None:
        issuer_end = issuer.certificate.not_valid_after_utc
        if start >= issuer_end:
            raise ValueError("issuer certificate has expired; cannot issue")
        end = min(end, issuer_end)
    return start, end


def _key_usage(names: frozenset[str]) -> x509.KeyUsage:
    flags = {name: name in names for name in KEY_USAGE_NAMES}
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


def general_names(values: Sequence[str]) -> list[x509.GeneralName]:
    """Turn ``values`` into GeneralNames: IP literals → iPAddress, ``urn:``/``http(s):`` →
    URI, anything else → dNSName (RFC 5280 4.2.1.6)."""
    names: list[x509.GeneralName] = []
    for value in values:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
            continue
        except ValueError:
            pass
        if value.startswith(("urn:", "http:", "https:")):
            names.append(x509.UniformResourceIdentifier(value))
        else:
            names.append(x509.DNSName(value))
    return names


def build_certificate(
    profile: Profile,
    *,
    subject: x509.Name,
    public_key: PublicKey,
    serial_number: int,
    not_valid_before: dt.datetime,
    issuer: Issuer | None,
    urls: PkiUrls,
    subject_alt_names: Sequence[str] = (),
) -> x509.CertificateBuilder:
    """Build (but do not sign) a certificate for ``profile``.

    Args:
        issuer: the issuing CA, or ``None`` for a self-signed root.
        subject_alt_names: see :func:`general_names`; the extension is critical when
            the subject is empty (RFC 5280 4.2.1.6).

    Returns:
        A complete :class:`x509.CertificateBuilder`; sign it with :func:`sign_certificate`.

    Raises:
        ValueError: see :func:`validity_window`; ``x509.ExtensionNotFound`` when the
            issuer certificate lacks a subjectKeyIdentifier.
    """
    start, end = validity_window(profile, not_valid_before, issuer)
    issuer_name = subject if issuer is None else issuer.certificate.subject
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.BasicConstraints(
                ca=profile.is_ca, path_length=profile.path_length if profile.is_ca else None
            ),
            critical=True,
        )
        .add_extension(_key_usage(profile.key_usage), critical=True)
        .add_extension(ski, critical=False)
    )
    aki_source = ski.digest if issuer is None else issuer.subject_key_identifier
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier(aki_source, None, None), critical=False
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usage)), critical=False
        )
    if subject_alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(general_names(subject_alt_names)),
            critical=len(subject) == 0,
        )
    if profile.certificate_policy is not None:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(profile.certificate_policy, None)]),
            critical=False,
        )
    if profile.ocsp_no_check:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    if profile.revocation_pointers and issuer is not None:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(urls.crl(issuer.ca_name))],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
        access = [
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(urls.ca_certificate(issuer.ca_name)),
            )
        ]
        if profile.ocsp_pointer:
            access.insert(
                0,
                x509.AccessDescription(
                    x509.oid.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(urls.ocsp(issuer.ca_name)),
                ),
            )
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """Hash for signing with ``key``: SHA-384 for P-384, SHA-256 otherwise (RFC 5758 3.2)."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 4096:
        return hashes.SHA384()
    return hashes.SHA256()


def sign_certificate(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    """Sign ``builder`` with the issuer's ``key`` (ECDSA or RSA PKCS#1 v1.5)."""
    return builder.sign(key, signature_hash(key))


def ca_subject(organization: str, common_name: str) -> x509.Name:
    """Subject of a CA certificate: ``C=HK, O=organization, CN=common_name``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def client_subject(
    *,
    provider_name_en: str,
    provider_name_zh: str | None,
    location_name_en: str,
    location_name_zh: str | None,
    location_identifier: str,
) -> x509.Name:
    """Subject of a service location's secure connection certificate (DESIGN.md, PKI).

    ``C=HK`` (PrintableString), ``O`` = provider English name, then its Chinese name,
    ``OU`` = service-location English name, then its Chinese name, ``CN`` = the
    service-location identifier; all but C as UTF8String, so Chinese names (including
    HKSCS characters outside the BMP) are exact.

    Raises:
        ValueError: if a value is empty or longer than 64 characters (X.520 upper
            bounds, RFC 5280 Appendix A).
    """
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "HK")]
    for oid, value in (
        (NameOID.ORGANIZATION_NAME, provider_name_en),
        (NameOID.ORGANIZATION_NAME, provider_name_zh),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, location_name_en),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, location_name_zh),
        (NameOID.COMMON_NAME, location_identifier),
    ):
        if value is None:
            continue
        if not value or len(value) > NAME_ATTRIBUTE_MAX:
            raise ValueError(
                f"{oid._name} must be 1 to {NAME_ATTRIBUTE_MAX} characters (X.520 upper bound)"
            )
        attributes.append(x509.NameAttribute(oid, value))
    return x509.Name(attributes)

"""Certificate profiles as data, and the pure builder that turns one into a certificate.

A :class:`Profile` says what a kind of certificate looks like (CA or end entity,
key usages, extended key usages, which pointers it carries, lifetime); the
:func:`build_certificate` function combines a profile with an issuer, a subject and
a public key. Nothing here signs: see :func:`sign_certificate`.

The profiles themselves are data: ``ca/profiles.toml`` (root CA, issuing CA, client,
mTLS server, OCSP responder), parsed by :func:`load_profiles` and refused at load with
a :class:`ProfileError` naming the profile and the rule (unknown or missing fields, a CA
without keyCertSign, an end entity with CA:TRUE, a validity of zero or less or above
the issuer profile's ...). :func:`configured_profiles` applies the deployment's
validity settings and policy OID; the factories (:func:`client_profile` ...) return the
shipped entries with another lifetime. Times are aware UTC; after 2049 cryptography
writes GeneralizedTime (RFC 5280 4.1.2.5), which ``ca.checks`` verifies.

Rules applied to every certificate (RFC 5280 section 4):
- issuer name copied from the issuer certificate's subject, never rebuilt (4.1.2.4);
- authorityKeyIdentifier = the issuer's subjectKeyIdentifier bytes (4.2.1.1);
- subjectKeyIdentifier = SHA-1 of the subjectPublicKey BIT STRING, method 1 (4.2.1.2);
- notAfter inclusive (4.1.2.5): ``not_valid_before + validity - 1 s``, capped by the
  issuer's notAfter;
- CRL distribution point and AIA over plain HTTP for everything below the root.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.config import CAConfig, PkiUrls
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
    issuer_profile: str | None = None

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
        if self.path_length is not None and (not self.is_ca or self.path_length < 0):
            raise ValueError(
                f"profile {self.name}: pathLenConstraint must be a non-negative integer and "
                "only on CA certificates, RFC 5280 4.2.1.9"
            )
        if self.ocsp_no_check and ExtendedKeyUsageOID.OCSP_SIGNING not in self.extended_key_usage:
            raise ValueError(
                f"profile {self.name}: ocsp_no_check is only for OCSP responder certificates "
                "(extendedKeyUsage id-kp-OCSPSigning), RFC 6960 4.2.2.2.1"
            )
        if self.ocsp_pointer and not self.revocation_pointers:
            raise ValueError(
                f"profile {self.name}: ocsp_pointer needs revocation_pointers (the OCSP URL is "
                "part of authorityInformationAccess), RFC 5280 4.2.2.1"
            )


def root_profile(validity: dt.timedelta) -> Profile:
    """Self-signed root CA: keyCertSign + cRLSign, no pointers (it is the trust anchor).
    The ``root_ca`` entry of ``profiles.toml`` with ``validity``."""
    return dataclasses.replace(default_profiles()["root_ca"], validity=validity)


def issuing_ca_profile(validity: dt.timedelta) -> Profile:
    """Online issuing CA below the root: pathLenConstraint 0, pointers to the root's CRL.
    The ``issuing_ca`` entry of ``profiles.toml`` with ``validity``."""
    return dataclasses.replace(default_profiles()["issuing_ca"], validity=validity)


def client_profile(validity: dt.timedelta, *, policy_oid: str, ocsp: bool = False) -> Profile:
    """Secure connection certificate of one service location (TLS client authentication).
    The ``client`` entry of ``profiles.toml`` with ``validity``, the deployment's policy
    OID and, with ``ocsp``, the OCSP URL in AIA."""
    return dataclasses.replace(
        default_profiles()["client"],
        validity=validity,
        certificate_policy=x509.ObjectIdentifier(policy_oid),
        ocsp_pointer=ocsp,
    )


def server_profile(validity: dt.timedelta, *, ocsp: bool = False) -> Profile:
    """The mTLS listener's TLS server certificate (``mtls_server`` in ``profiles.toml``)."""
    return dataclasses.replace(
        default_profiles()["mtls_server"], validity=validity, ocsp_pointer=ocsp
    )


def ocsp_responder_profile(validity: dt.timedelta) -> Profile:
    """A delegated OCSP responder certificate (RFC 6960 4.2.2.2): extendedKeyUsage
    id-kp-OCSPSigning and id-pkix-ocsp-nocheck (``ocsp_responder`` in ``profiles.toml``)."""
    return dataclasses.replace(default_profiles()["ocsp_responder"], validity=validity)


# --------------------------------------------------------------------------- profiles as data

#: The profile table shipped with the package (see the comments in the file).
PROFILES_FILE: Final[Path] = Path(__file__).with_name("profiles.toml")

#: Default certificatePolicies OID (``CAConfig.certificate_policy_oid``'s default).
DEFAULT_POLICY_OID: Final[str] = "1.3.6.1.4.1.32473.1.1"

#: extendedKeyUsage names allowed in profile data (RFC 5280 4.2.1.12, RFC 6960 4.2.2.2).
EXTENDED_KEY_USAGES: Final[Mapping[str, x509.ObjectIdentifier]] = MappingProxyType(
    {
        "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
        "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
        "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    }
)

#: Every field a profile entry may carry, with its TOML type.
PROFILE_FIELDS: Final[Mapping[str, type]] = MappingProxyType(
    {
        "kind": str,
        "basic_constraints_ca": bool,
        "path_length": int,
        "key_usage": list,
        "extended_key_usage": list,
        "issuer": str,
        "validity_days": int,
        "revocation_pointers": bool,
        "ocsp_pointer": bool,
        "certificate_policy": bool,
        "ocsp_no_check": bool,
    }
)
REQUIRED_PROFILE_FIELDS: Final[frozenset[str]] = frozenset(
    {"kind", "basic_constraints_ca", "key_usage", "validity_days"}
)
PROFILE_KINDS: Final[frozenset[str]] = frozenset({"ca", "end_entity"})

ProfileSet = Mapping[str, Profile]
"""Profiles by name, read-only (what :func:`load_profiles` returns)."""


class ProfileError(ValueError):
    """Profile data breaks a rule; the message names the profile and the rule.

    Attributes:
        profile: the offending profile's name (``None`` for a file-level error).
    """

    def __init__(self, profile: str | None, rule: str) -> None:
        self.profile = profile
        super().__init__(f"profile {profile}: {rule}" if profile else f"profile data: {rule}")


def _field(name: str, entry: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``entry[key]`` checked against :data:`PROFILE_FIELDS` (bool is not an int here)."""
    if key not in entry:
        return default
    value = entry[key]
    expected = PROFILE_FIELDS[key]
    if type(value) is not expected:
        raise ProfileError(name, f"{key} must be a {expected.__name__}, got {value!r}")
    return value


def _names(name: str, key: str, values: list[Any], allowed: Sequence[str]) -> list[str]:
    if not all(isinstance(v, str) for v in values):
        raise ProfileError(name, f"{key} must be a list of names")
    if len(set(values)) != len(values):
        raise ProfileError(name, f"{key} lists a name twice")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ProfileError(name, f"unknown {key} {unknown}; allowed: {', '.join(allowed)}")
    return list(values)


def profile_from_data(
    name: str,
    entry: Mapping[str, Any],
    *,
    policy_oid: str = DEFAULT_POLICY_OID,
    validity: dt.timedelta | None = None,
) -> Profile:
    """Turn one profile entry (a TOML table) into a :class:`Profile`.

    Args:
        validity: replaces ``validity_days`` (a setting such as ``EHRCA_CLIENT_VALIDITY_DAYS``).

    Raises:
        ProfileError: unknown or missing field, wrong type, unknown kind, key usage or
            extended key usage, ``basic_constraints_ca`` not matching ``kind`` (an end
            entity with CA:TRUE, RFC 5280 4.2.1.9), a CA without keyCertSign or an end
            entity with it (4.2.1.3), a validity of zero or less, and every rule of
            :class:`Profile`.
    """
    if not isinstance(entry, Mapping):
        raise ProfileError(name, "must be a table of fields")
    unknown = sorted(set(entry) - set(PROFILE_FIELDS))
    if unknown:
        raise ProfileError(name, f"unknown fields {unknown}")
    missing = sorted(REQUIRED_PROFILE_FIELDS - set(entry))
    if missing:
        raise ProfileError(name, f"missing fields {missing}")
    kind = _field(name, entry, "kind")
    if kind not in PROFILE_KINDS:
        raise ProfileError(name, f"kind must be one of {sorted(PROFILE_KINDS)}, got {kind!r}")
    is_ca = _field(name, entry, "basic_constraints_ca")
    if kind == "end_entity" and is_ca:
        raise ProfileError(
            name, "an end entity must have basicConstraints CA:FALSE, RFC 5280 4.2.1.9"
        )
    if kind == "ca" and not is_ca:
        raise ProfileError(name, "a CA must have basicConstraints CA:TRUE, RFC 5280 4.2.1.9")
    key_usage = frozenset(
        _names(name, "key_usage", _field(name, entry, "key_usage"), KEY_USAGE_NAMES)
    )
    if kind == "ca" and "key_cert_sign" not in key_usage:
        raise ProfileError(name, "a CA must assert keyCertSign, RFC 5280 4.2.1.3")
    if kind == "end_entity" and "key_cert_sign" in key_usage:
        raise ProfileError(name, "an end entity must not assert keyCertSign, RFC 5280 4.2.1.3")
    if not key_usage:
        raise ProfileError(name, "key_usage must name at least one usage, RFC 5280 4.2.1.3")
    eku = _names(
        name,
        "extended_key_usage",
        _field(name, entry, "extended_key_usage", []),
        tuple(EXTENDED_KEY_USAGES),
    )
    days = _field(name, entry, "validity_days")
    if validity is None:
        if days <= 0:
            raise ProfileError(name, f"validity_days must be positive, got {days}")
        validity = dt.timedelta(days=days)
    elif validity <= dt.timedelta(0):
        raise ProfileError(name, f"validity must be positive, got {validity}")
    try:
        return Profile(
            name=name,
            validity=validity,
            is_ca=is_ca,
            key_usage=key_usage,
            extended_key_usage=tuple(EXTENDED_KEY_USAGES[e] for e in eku),
            path_length=_field(name, entry, "path_length"),
            revocation_pointers=_field(name, entry, "revocation_pointers", True),
            ocsp_pointer=_field(name, entry, "ocsp_pointer", False),
            certificate_policy=(
                x509.ObjectIdentifier(policy_oid)
                if _field(name, entry, "certificate_policy", False)
                else None
            ),
            ocsp_no_check=_field(name, entry, "ocsp_no_check", False),
            issuer_profile=_field(name, entry, "issuer"),
        )
    except ProfileError:
        raise
    except ValueError as exc:
        raise ProfileError(name, str(exc).removeprefix(f"profile {name}: ")) from exc


def check_profile_set(profiles: Mapping[str, Profile]) -> None:
    """Cross-profile rules: each ``issuer_profile`` names a CA profile of the set, no
    cycles, a profile's validity is at most its issuer profile's (a certificate never
    outlives its issuer, RFC 5280 6.1.3 (a)(2)), and a CA profile is not issued under a
    CA profile with pathLenConstraint 0 (RFC 5280 4.2.1.9).

    Raises:
        ProfileError: naming the profile and the rule.
    """
    for name, profile in profiles.items():
        seen = {name}
        parent_name = profile.issuer_profile
        while parent_name is not None:
            if parent_name in seen:
                raise ProfileError(name, f"issuer chain has a cycle through {parent_name!r}")
            seen.add(parent_name)
            parent = profiles.get(parent_name)
            if parent is None:
                raise ProfileError(name, f"issuer {parent_name!r} is not a profile of the set")
            parent_name = parent.issuer_profile
        if profile.issuer_profile is None:
            if not profile.is_ca:
                raise ProfileError(name, "an end entity needs an issuer profile")
            continue
        issuer = profiles[profile.issuer_profile]
        if not issuer.is_ca:
            raise ProfileError(name, f"issuer {issuer.name!r} is not a CA profile")
        if profile.validity > issuer.validity:
            raise ProfileError(
                name,
                f"validity {_days(profile.validity)} is above the issuer profile "
                f"{issuer.name!r}'s {_days(issuer.validity)}",
            )
        if profile.is_ca and issuer.path_length == 0:
            raise ProfileError(
                name,
                f"a CA cannot be issued under {issuer.name!r} (pathLenConstraint 0), "
                "RFC 5280 4.2.1.9",
            )


def _days(delta: dt.timedelta) -> str:
    return f"{delta.days} days" if delta == dt.timedelta(days=delta.days) else str(delta)


def load_profiles(
    text: str | None = None,
    *,
    policy_oid: str = DEFAULT_POLICY_OID,
    validity: Mapping[str, dt.timedelta] | None = None,
) -> ProfileSet:
    """Parse and validate a profile table (TOML; default: :data:`PROFILES_FILE`).

    Args:
        text: TOML text; ``None`` reads the shipped ``ca/profiles.toml``.
        policy_oid: dotted OID written by profiles with ``certificate_policy = true``.
        validity: per-profile lifetimes replacing ``validity_days`` (the settings).

    Returns:
        A read-only mapping of profile name to :class:`Profile`.

    Raises:
        ProfileError: the TOML does not parse, a ``validity`` key names no profile, or
            any rule of :func:`profile_from_data` and :func:`check_profile_set`.
    """
    if text is None:
        text = PROFILES_FILE.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(None, f"not valid TOML: {exc}") from exc
    overrides = dict(validity or {})
    unknown = sorted(set(overrides) - set(data))
    if unknown:
        raise ProfileError(None, f"validity given for unknown profiles {unknown}")
    profiles = {
        name: profile_from_data(name, entry, policy_oid=policy_oid, validity=overrides.get(name))
        for name, entry in data.items()
    }
    check_profile_set(profiles)
    return MappingProxyType(profiles)


@functools.cache
def default_profiles() -> ProfileSet:
    """The shipped profiles with their default validity and policy OID (cached)."""
    return load_profiles()


@functools.lru_cache(maxsize=16)
def configured_profiles(config: CAConfig) -> ProfileSet:
    """The shipped profiles with the deployment's validity settings and policy OID.

    Raises:
        ProfileError: e.g. ``EHRCA_CLIENT_VALIDITY_DAYS`` above the issuing CA's validity.
    """
    return load_profiles(
        policy_oid=config.certificate_policy_oid,
        validity={
            "root_ca": config.root_validity,
            "issuing_ca": config.issuing_validity,
            "client": config.client_validity,
            "mtls_server": config.server_validity,
            "ocsp_responder": config.ocsp_responder_validity,
        },
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
    capped by the issuer's notAfter. A certificate never starts before its issuer
    (RFC 5280 6.1.3 (a)(2); the pipeline's ``ca.checks.check_issuer_valid_at_start``
    refuses it first, by name).

    Raises:
        ValueError: for a naive ``not_valid_before``, one before the issuer's notBefore
            (``issuer certificate is not valid until ...``) or one at/after the issuer's
            notAfter (``issuer certificate has expired``).
    """
    if not_valid_before.tzinfo is None:
        raise ValueError("not_valid_before must be timezone-aware UTC")
    start = not_valid_before.astimezone(dt.UTC).replace(microsecond=0)
    end = start + profile.validity - dt.timedelta(seconds=1)
    if issuer is not None:
        issuer_start = issuer.certificate.not_valid_before_utc
        if start < issuer_start:
            raise ValueError(
                f"issuer certificate is not valid until {issuer_start.isoformat()}; "
                f"cannot issue at {start.isoformat()}"
            )
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
    crl_shard: int | None = None,
) -> x509.CertificateBuilder:
    """Build (but do not sign) a certificate for ``profile``.

    Args:
        issuer: the issuing CA, or ``None`` for a self-signed root.
        subject_alt_names: see :func:`general_names`; the extension is critical when
            the subject is empty (RFC 5280 4.2.1.6).
        crl_shard: CRL partition (1..n): the CRL distribution point names that shard's
            CRL (:meth:`PkiUrls.crl_shard`, RFC 5280 5.2.5) instead of the full CRL.

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
        crl_url = (
            urls.crl(issuer.ca_name)
            if crl_shard is None
            else urls.crl_shard(issuer.ca_name, crl_shard)
        )
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
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
        attributes.append(_name_attribute(oid, value))
    return x509.Name(attributes)


def _name_attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    """A UTF8String attribute whose length the caller checked in characters.

    cryptography bounds commonName by 64 UTF-8 *octets*, but X.520's ub-common-name
    (RFC 5280 Appendix A) counts characters, so a 64-character Chinese name (up to 256
    octets) is valid: its octet check is skipped (``_validate=False``, which only turns
    the refusal into a warning, silenced here).
    """
    if len(value.encode("utf-8")) <= NAME_ATTRIBUTE_MAX:
        return x509.NameAttribute(oid, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return x509.NameAttribute(oid, value, _validate=False)

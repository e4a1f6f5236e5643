"""Tests for ca.profiles: profile rules, validity windows, subjects and the certificate
builder (round trip build → sign → DER → load, RFC 5280 section 4), plus a golden DER.

Golden file: ``tests/ca/data/golden_client.der`` is a client certificate built by
:func:`ca.profiles.build_certificate` below a self-signed root, both signed with the
committed RSA-2048 test key ``tests/ca/data/golden_ca_rsa2048.key.pem`` (RSA PKCS#1 v1.5
is deterministic) with fixed serials and times; the subject key is
``golden_subject_p256.pub.pem``. After an intended change to the builder, regenerate
it with::

    EHRCA_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/ca/test_profiles.py -k golden

and review the ``openssl x509 -inform der -text`` difference before committing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import ipaddress
import os
from pathlib import Path

import asn1crypto.keys
import asn1crypto.x509
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
)
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ca import lint
from ca.config import PkiUrls
from ca.keys import PublicKey
from ca.profiles import (
    KEY_USAGE_NAMES,
    NAME_ATTRIBUTE_MAX,
    Issuer,
    Profile,
    build_certificate,
    ca_subject,
    client_profile,
    client_subject,
    general_names,
    issuing_ca_profile,
    root_profile,
    server_profile,
    sign_certificate,
    signature_hash,
    validity_window,
)

DATA = Path(__file__).resolve().parent / "data"
GOLDEN_DER = DATA / "golden_client.der"
GOLDEN_CA_KEY = DATA / "golden_ca_rsa2048.key.pem"
GOLDEN_SUBJECT_KEY = DATA / "golden_subject_p256.pub.pem"

URLS = PkiUrls("http://pki.ehrca.test")
POLICY_OID = "1.3.6.1.4.1.32473.1.1"
CHINESE_NAME = "屯門𨋢口診所"  # 𨋢 is U+282E2, outside the BMP
ISSUER_NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ISSUER_VALIDITY = dt.timedelta(days=10 * 365)
HKT = dt.timezone(dt.timedelta(hours=8))

PRINTABLE_STRING_TAG = 0x13
UTF8_STRING_TAG = 0x0C

# Printable unicode: no control, format, surrogate, private-use, unassigned or
# line/paragraph separator characters; anything else, BMP or not.
NAME_VALUES = st.text(
    st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
    min_size=1,
    max_size=NAME_ATTRIBUTE_MAX,
)


@functools.cache
def hierarchy() -> tuple[ec.EllipticCurvePrivateKey, Issuer]:
    """A root (subject with a PrintableString CN, to show the issuer name is copied and
    never re-encoded) and an issuing CA below it; returns the issuing CA and its key."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eHR Secure Connection"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Test Root", _type=_ASN1Type.PrintableString),
        ]
    )
    root = sign_certificate(
        build_certificate(
            root_profile(dt.timedelta(days=20 * 365)),
            subject=root_subject,
            public_key=root_key.public_key(),
            serial_number=1,
            not_valid_before=ISSUER_NOT_BEFORE - dt.timedelta(days=1),
            issuer=None,
            urls=URLS,
        ),
        root_key,
    )
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eHR Secure Connection"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA", _type=_ASN1Type.PrintableString),
        ]
    )
    issuing = sign_certificate(
        build_certificate(
            issuing_ca_profile(ISSUER_VALIDITY),
            subject=issuing_subject,
            public_key=issuing_key.public_key(),
            serial_number=2,
            not_valid_before=ISSUER_NOT_BEFORE,
            issuer=Issuer(root, "root-ca"),
            urls=URLS,
        ),
        root_key,
    )
    return issuing_key, Issuer(issuing, "issuing-ca-1")


@functools.cache
def subject_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ski_method_1(public_key: PublicKey) -> bytes:
    """RFC 5280 4.2.1.2 (1): SHA-1 of the subjectPublicKey BIT STRING value, computed
    from the DER with asn1crypto (not with cryptography's helper)."""
    spki_der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bit_string = asn1crypto.keys.PublicKeyInfo.load(spki_der)["public_key"]
    contents: bytes = bit_string.contents
    assert contents[0] == 0  # no unused bits
    return hashlib.sha1(contents[1:]).digest()  # noqa: S324 - RFC 5280 method 1


def asserted_key_usages(certificate: x509.Certificate) -> set[str]:
    ku = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    return {name for name in KEY_USAGE_NAMES if getattr(ku, name)}


def name_string_tags(der: bytes, field: str) -> list[tuple[str, int]]:
    """``[(attribute type, DER tag of the value)]`` of ``field`` (subject or issuer)."""
    name = asn1crypto.x509.Certificate.load(der)["tbs_certificate"][field]
    return [(atv["type"].native, atv["value"].dump()[0]) for rdn in name.chosen for atv in rdn]


# --------------------------------------------------------------------------- Profile


def test_profile_refuses_key_cert_sign_on_end_entity() -> None:
    with pytest.raises(ValueError, match="keyCertSign"):
        Profile(
            name="bad_leaf",
            validity=dt.timedelta(days=1),
            is_ca=False,
            key_usage=frozenset({"digital_signature", "key_cert_sign"}),
        )


def test_profile_refuses_ca_without_key_cert_sign() -> None:
    with pytest.raises(ValueError, match="keyCertSign"):
        Profile(
            name="bad_ca",
            validity=dt.timedelta(days=1),
            is_ca=True,
            key_usage=frozenset({"crl_sign"}),
        )


def test_profile_refuses_unknown_key_usage_and_non_positive_validity() -> None:
    with pytest.raises(ValueError, match="unknown key usages"):
        Profile("x", dt.timedelta(days=1), False, frozenset({"sign_everything"}))
    for validity in (
        dt.timedelta(0),
        dt.timedelta(seconds=-1),
        dt.timedelta(microseconds=1),
        dt.timedelta(days=1, microseconds=500),
    ):
        with pytest.raises(ValueError, match="validity must be positive whole seconds"):
            Profile("x", validity, False, frozenset({"digital_signature"}))


def test_predefined_profiles() -> None:
    root = root_profile(dt.timedelta(days=1))
    assert (root.is_ca, root.key_usage, root.revocation_pointers) == (
        True,
        frozenset({"key_cert_sign", "crl_sign"}),
        False,
    )
    issuing = issuing_ca_profile(dt.timedelta(days=1))
    assert (issuing.is_ca, issuing.path_length, issuing.revocation_pointers) == (True, 0, True)
    client = client_profile(dt.timedelta(days=1), policy_oid=POLICY_OID, ocsp=True)
    assert client.extended_key_usage == (ExtendedKeyUsageOID.CLIENT_AUTH,)
    assert client.certificate_policy == x509.ObjectIdentifier(POLICY_OID)
    assert client.ocsp_pointer is True
    server = server_profile(dt.timedelta(days=1))
    assert server.extended_key_usage == (ExtendedKeyUsageOID.SERVER_AUTH,)
    assert (server.is_ca, server.key_usage) == (False, frozenset({"digital_signature"}))


def test_signature_hash() -> None:
    assert signature_hash(ec.generate_private_key(ec.SECP256R1())).name == "sha256"
    assert signature_hash(ec.generate_private_key(ec.SECP384R1())).name == "sha384"
    assert signature_hash(rsa.generate_private_key(65537, 2048)).name == "sha256"


# --------------------------------------------------------------------------- validity


@settings(max_examples=200, deadline=None)
@given(
    not_valid_before=st.datetimes(
        min_value=dt.datetime(2023, 1, 1),
        max_value=dt.datetime(2034, 12, 31),
        timezones=st.sampled_from([dt.UTC, HKT, dt.timezone(dt.timedelta(hours=-9, minutes=-30))]),
    ),
    validity=st.integers(min_value=1, max_value=30 * 365 * 86400).map(
        lambda s: dt.timedelta(seconds=s)
    ),
)
def test_validity_window_inside_issuer(
    not_valid_before: dt.datetime, validity: dt.timedelta
) -> None:
    _, issuer = hierarchy()
    issuer_end = issuer.certificate.not_valid_after_utc
    profile = client_profile(validity, policy_oid=POLICY_OID)
    start_utc = not_valid_before.astimezone(dt.UTC).replace(microsecond=0)
    if start_utc < ISSUER_NOT_BEFORE:
        with pytest.raises(ValueError, match="issuer certificate is not valid until"):
            validity_window(profile, not_valid_before, issuer)
        return
    if start_utc >= issuer_end:
        with pytest.raises(ValueError, match="expired"):
            validity_window(profile, not_valid_before, issuer)
        return
    start, end = validity_window(profile, not_valid_before, issuer)
    assert start == start_utc
    assert start.tzinfo == dt.UTC and end.tzinfo == dt.UTC
    assert start.microsecond == 0 and end.microsecond == 0
    assert end == min(start_utc + validity - dt.timedelta(seconds=1), issuer_end)
    assert start <= end <= issuer_end


def test_validity_window_exact_values() -> None:
    _, issuer = hierarchy()
    profile = client_profile(dt.timedelta(days=730), policy_oid=POLICY_OID)
    start, end = validity_window(
        profile, dt.datetime(2026, 11, 29, 9, 0, 0, 987654, tzinfo=HKT), issuer
    )
    assert start == dt.datetime(2026, 11, 29, 1, 0, 0, tzinfo=dt.UTC)
    assert end == dt.datetime(2028, 11, 28, 0, 59, 59, tzinfo=dt.UTC)
    # Near the issuer's end the notAfter is the issuer's notAfter.
    issuer_end = issuer.certificate.not_valid_after_utc
    _, capped = validity_window(profile, issuer_end - dt.timedelta(days=1), issuer)
    assert capped == issuer_end
    # Without an issuer (self-signed root) nothing caps it.
    _, root_end = validity_window(profile, dt.datetime(2030, 1, 1, tzinfo=dt.UTC), None)
    assert root_end == dt.datetime(2031, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def test_validity_window_refusals() -> None:
    _, issuer = hierarchy()
    profile = client_profile(dt.timedelta(days=1), policy_oid=POLICY_OID)
    with pytest.raises(ValueError, match="timezone-aware"):
        validity_window(profile, dt.datetime(2026, 1, 1), issuer)
    issuer_end = issuer.certificate.not_valid_after_utc
    with pytest.raises(ValueError, match="expired"):
        validity_window(profile, issuer_end, issuer)
    with pytest.raises(ValueError, match="expired"):
        validity_window(profile, issuer_end + dt.timedelta(microseconds=999_999), issuer)
    # Never before the issuer's notBefore (2024-01-01T00:00:00Z): one second early is
    # refused, the same second (microseconds truncated) is the first valid start.
    assert issuer.certificate.not_valid_before_utc == ISSUER_NOT_BEFORE
    with pytest.raises(ValueError) as info:
        validity_window(profile, ISSUER_NOT_BEFORE - dt.timedelta(seconds=1), issuer)
    assert str(info.value) == (
        "issuer certificate is not valid until 2024-01-01T00:00:00+00:00; cannot issue at "
        "2023-12-31T23:59:59+00:00"
    )
    start, _ = validity_window(
        profile, ISSUER_NOT_BEFORE + dt.timedelta(microseconds=999_999), issuer
    )
    assert start == ISSUER_NOT_BEFORE


# --------------------------------------------------------------------------- subjects


def test_client_subject_attribute_order_and_types() -> None:
    subject = client_subject(
        provider_name_en="Tuen Mun Clinic",
        provider_name_zh=CHINESE_NAME,
        location_name_en="Main",
        location_name_zh=None,
        location_identifier="HCP-7K3Q9M2T-1",
    )
    assert [(a.oid, a.value) for a in subject] == [
        (NameOID.COUNTRY_NAME, "HK"),
        (NameOID.ORGANIZATION_NAME, "Tuen Mun Clinic"),
        (NameOID.ORGANIZATION_NAME, CHINESE_NAME),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Main"),
        (NameOID.COMMON_NAME, "HCP-7K3Q9M2T-1"),
    ]
    assert subject.public_bytes().count(CHINESE_NAME.encode("utf-8")) == 1


@pytest.mark.parametrize(
    "field",
    [
        "provider_name_en",
        "provider_name_zh",
        "location_name_en",
        "location_name_zh",
        "location_identifier",
    ],
)
@pytest.mark.parametrize("value", ["x" * (NAME_ATTRIBUTE_MAX + 1), "𨋢" * 65, ""])
def test_client_subject_refuses_empty_or_over_64(field: str, value: str) -> None:
    values: dict[str, str] = {
        "provider_name_en": "Clinic",
        "provider_name_zh": "診所",
        "location_name_en": "Main",
        "location_name_zh": "總部",
        "location_identifier": "HCP-1-1",
    }
    values[field] = value
    with pytest.raises(ValueError, match="1 to 64 characters"):
        client_subject(**values)


def test_client_subject_accepts_exactly_64_outside_bmp() -> None:
    value = "𨋢" * NAME_ATTRIBUTE_MAX  # 64 characters, 256 UTF-8 octets
    subject = client_subject(
        provider_name_en=value,
        provider_name_zh=None,
        location_name_en="Main",
        location_name_zh=None,
        location_identifier="HCP-1-1",
    )
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == value


def test_ca_subject() -> None:
    subject = ca_subject("eHR Secure Connection", "eHR Issuing CA 1")
    assert subject.rfc4514_string() == "CN=eHR Issuing CA 1,O=eHR Secure Connection,C=HK"


def test_general_names() -> None:
    assert general_names(
        ["localhost", "127.0.0.1", "::1", "https://id.ehrca.example/x", "urn:ehrca:x"]
    ) == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.UniformResourceIdentifier("https://id.ehrca.example/x"),
        x509.UniformResourceIdentifier("urn:ehrca:x"),
    ]


# --------------------------------------------------------------------------- round trip

PROFILES = st.sampled_from(
    [
        client_profile(dt.timedelta(days=730), policy_oid=POLICY_OID),
        client_profile(dt.timedelta(days=730), policy_oid=POLICY_OID, ocsp=True),
        server_profile(dt.timedelta(days=397)),
        issuing_ca_profile(dt.timedelta(days=5 * 365)),
    ]
)


@settings(max_examples=50, deadline=None)
@given(
    profile=PROFILES,
    provider_en=NAME_VALUES,
    provider_zh=st.none() | NAME_VALUES,
    location_en=NAME_VALUES,
    location_zh=st.none() | NAME_VALUES,
    identifier=NAME_VALUES,
    serial_number=st.integers(min_value=1, max_value=2**159 - 1),
    not_valid_before=st.datetimes(
        min_value=dt.datetime(2024, 1, 1),
        max_value=dt.datetime(2033, 12, 31),
        timezones=st.sampled_from([dt.UTC, HKT]),
    ),
    validity=st.integers(min_value=1, max_value=20 * 365 * 86400).map(
        lambda s: dt.timedelta(seconds=s)
    ),
    sans=st.lists(
        st.sampled_from(["localhost", "10.0.0.1", "https://id.ehrca.example/hcp/1"]),
        max_size=3,
        unique=True,
    ),
)
@example(
    profile=client_profile(dt.timedelta(days=730), policy_oid=POLICY_OID, ocsp=True),
    provider_en="Tuen Mun Clinic",
    provider_zh=CHINESE_NAME,
    location_en="Lift Lobby",
    location_zh=CHINESE_NAME,
    identifier="HCP-7K3Q9M2T-1",
    serial_number=2**159 - 1,
    not_valid_before=dt.datetime(2026, 11, 29, 9, 0, 0, 123456, tzinfo=dt.UTC),
    validity=dt.timedelta(days=730),
    sans=["https://id.ehrca.example/hcp/1"],
)
def test_build_sign_load_round_trip(
    profile: Profile,
    provider_en: str,
    provider_zh: str | None,
    location_en: str,
    location_zh: str | None,
    identifier: str,
    serial_number: int,
    not_valid_before: dt.datetime,
    validity: dt.timedelta,
    sans: list[str],
) -> None:
    issuer_key, issuer = hierarchy()
    profile = dataclasses.replace(profile, validity=validity)
    assume(not_valid_before < issuer.certificate.not_valid_after_utc)
    subject = client_subject(
        provider_name_en=provider_en,
        provider_name_zh=provider_zh,
        location_name_en=location_en,
        location_name_zh=location_zh,
        location_identifier=identifier,
    )
    public_key = subject_key().public_key()
    der = sign_certificate(
        build_certificate(
            profile,
            subject=subject,
            public_key=public_key,
            serial_number=serial_number,
            not_valid_before=not_valid_before,
            issuer=issuer,
            urls=URLS,
            subject_alt_names=sans,
        ),
        issuer_key,
    ).public_bytes(serialization.Encoding.DER)
    certificate = x509.load_der_x509_certificate(der)

    # Subject, serial, key.
    expected_subject = [(NameOID.COUNTRY_NAME, "HK"), (NameOID.ORGANIZATION_NAME, provider_en)]
    if provider_zh is not None:
        expected_subject.append((NameOID.ORGANIZATION_NAME, provider_zh))
    expected_subject.append((NameOID.ORGANIZATIONAL_UNIT_NAME, location_en))
    if location_zh is not None:
        expected_subject.append((NameOID.ORGANIZATIONAL_UNIT_NAME, location_zh))
    expected_subject.append((NameOID.COMMON_NAME, identifier))
    assert [(a.oid, a.value) for a in certificate.subject] == expected_subject
    tags = name_string_tags(der, "subject")
    assert tags[0] == ("country_name", PRINTABLE_STRING_TAG)
    assert all(tag == UTF8_STRING_TAG for _, tag in tags[1:])
    assert certificate.serial_number == serial_number
    assert certificate.public_key() == public_key
    assert certificate.version is x509.Version.v3

    # Validity: whole seconds, inclusive notAfter, inside the issuer's.
    start = not_valid_before.astimezone(dt.UTC).replace(microsecond=0)
    issuer_end = issuer.certificate.not_valid_after_utc
    assert certificate.not_valid_before_utc == start
    assert certificate.not_valid_after_utc == min(
        start + validity - dt.timedelta(seconds=1), issuer_end
    )
    assert certificate.not_valid_after_utc <= issuer_end

    # Issuer: the issuer certificate's subject bytes, copied (RFC 5280 4.1.2.4).
    issuer_der = issuer.certificate.public_bytes(serialization.Encoding.DER)
    assert (
        asn1crypto.x509.Certificate.load(der)["tbs_certificate"]["issuer"].dump()
        == asn1crypto.x509.Certificate.load(issuer_der)["tbs_certificate"]["subject"].dump()
    )
    assert ("common_name", PRINTABLE_STRING_TAG) in name_string_tags(der, "issuer")
    certificate.verify_directly_issued_by(issuer.certificate)

    # Extensions.
    ext = certificate.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value == x509.BasicConstraints(
        ca=profile.is_ca, path_length=profile.path_length
    )
    assert ext.get_extension_for_class(x509.KeyUsage).critical
    assert asserted_key_usages(certificate) == profile.key_usage
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical and ski.value.digest == ski_method_1(public_key)
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuer.subject_key_identifier
    assert aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None
    expected_oids = {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
    if profile.extended_key_usage:
        expected_oids.add(ExtensionOID.EXTENDED_KEY_USAGE)
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == list(profile.extended_key_usage)
    if profile.certificate_policy is not None:
        expected_oids.add(ExtensionOID.CERTIFICATE_POLICIES)
        policies = ext.get_extension_for_class(x509.CertificatePolicies).value
        assert [p.policy_identifier for p in policies] == [profile.certificate_policy]
    if sans:
        expected_oids.add(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        san = ext.get_extension_for_class(x509.SubjectAlternativeName)
        assert not san.critical  # the subject is never empty here
        assert list(san.value) == general_names(sans)
    assert {e.oid for e in ext} == expected_oids
    crldp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [dp.full_name for dp in crldp] == [
        [x509.UniformResourceIdentifier("http://pki.ehrca.test/pki/crl/issuing-ca-1.crl")]
    ]
    aia = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    expected_aia = [
        (
            AuthorityInformationAccessOID.CA_ISSUERS,
            "http://pki.ehrca.test/pki/ca/issuing-ca-1.crt",
        )
    ]
    if profile.ocsp_pointer:
        expected_aia.insert(
            0, (AuthorityInformationAccessOID.OCSP, "http://pki.ehrca.test/pki/ocsp/issuing-ca-1")
        )
    assert [(d.access_method, d.access_location.value) for d in aia] == expected_aia


def test_self_signed_root() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = ca_subject("eHR Secure Connection", "Root")
    root = sign_certificate(
        build_certificate(
            root_profile(dt.timedelta(days=1)),
            subject=subject,
            public_key=key.public_key(),
            serial_number=7,
            not_valid_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            issuer=None,
            urls=URLS,
        ),
        key,
    )
    assert root.issuer == root.subject == subject
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = root.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski == ski_method_1(key.public_key())
    # A root carries no pointers to itself.
    oids = {e.oid for e in root.extensions}
    assert ExtensionOID.CRL_DISTRIBUTION_POINTS not in oids
    assert ExtensionOID.AUTHORITY_INFORMATION_ACCESS not in oids
    assert root.not_valid_after_utc == dt.datetime(2026, 1, 1, 23, 59, 59, tzinfo=dt.UTC)
    root.verify_directly_issued_by(root)


def test_san_critical_when_subject_empty() -> None:
    issuer_key, issuer = hierarchy()
    certificate = sign_certificate(
        build_certificate(
            server_profile(dt.timedelta(days=1)),
            subject=x509.Name([]),
            public_key=subject_key().public_key(),
            serial_number=5,
            not_valid_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            issuer=issuer,
            urls=URLS,
            subject_alt_names=["localhost"],
        ),
        issuer_key,
    )
    assert certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_issuer_without_ski_raises() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "No SKI")])
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
        .sign(key, signature_hash(key))
    )
    with pytest.raises(x509.ExtensionNotFound):
        build_certificate(
            server_profile(dt.timedelta(days=1)),
            subject=name,
            public_key=key.public_key(),
            serial_number=2,
            not_valid_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            issuer=Issuer(bare, "bare"),
            urls=URLS,
        )


# --------------------------------------------------------------------------- golden DER


def golden_certificate() -> bytes:
    ca_key = serialization.load_pem_private_key(GOLDEN_CA_KEY.read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    leaf_key = serialization.load_pem_public_key(GOLDEN_SUBJECT_KEY.read_bytes())
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    root = sign_certificate(
        build_certificate(
            root_profile(dt.timedelta(days=20 * 365)),
            subject=ca_subject("eHR Secure Connection", "eHR Golden Test Root"),
            public_key=ca_key.public_key(),
            serial_number=0x1D2C3B4A59687766554433221100FFEEDDCCBBAA,
            not_valid_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            issuer=None,
            urls=URLS,
        ),
        ca_key,
    )
    leaf = sign_certificate(
        build_certificate(
            client_profile(dt.timedelta(days=730), policy_oid=POLICY_OID, ocsp=True),
            subject=client_subject(
                provider_name_en="Tuen Mun Lift Lobby Clinic",
                provider_name_zh=CHINESE_NAME,
                location_name_en="Tuen Mun",
                location_name_zh="屯門",
                location_identifier="HCP-7K3Q9M2T-1",
            ),
            public_key=leaf_key,
            serial_number=0x7A3F00112233445566778899AABBCCDDEEFF0011,
            not_valid_before=dt.datetime(2026, 11, 29, 9, 0, 0, 654321, tzinfo=dt.UTC),
            issuer=Issuer(root, "golden-root"),
            urls=URLS,
            subject_alt_names=["https://id.ehrca.example/hcp/HCP-7K3Q9M2T/sl/1"],
        ),
        ca_key,
    )
    leaf.verify_directly_issued_by(root)
    return leaf.public_bytes(serialization.Encoding.DER)


def test_golden_client_certificate() -> None:
    der = golden_certificate()
    if os.environ.get("EHRCA_REGENERATE_GOLDEN") == "1":
        GOLDEN_DER.write_bytes(der)
    assert der == GOLDEN_DER.read_bytes()
    certificate = x509.load_der_x509_certificate(der)
    assert certificate.not_valid_before_utc == dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)
    assert certificate.not_valid_after_utc == dt.datetime(2028, 11, 28, 8, 59, 59, tzinfo=dt.UTC)
    assert CHINESE_NAME.encode("utf-8") in der


def test_golden_client_certificate_lints_clean() -> None:
    findings = [
        f
        for f in lint.blocking(lint.lint_certificate(GOLDEN_DER.read_bytes()))
        if not lint.is_known_false_positive(f)
    ]
    assert findings == []

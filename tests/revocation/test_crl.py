"""Tests for revocation.crl: the CRL entries equal the revoked set (checked against a CRL
built directly with cryptography's builders), CRL number and AKI, the empty CRL's
DER, pkilint, and the refusals (RFC 5280 section 5)."""

from __future__ import annotations

import datetime as dt
import functools

import asn1crypto.crl
import asn1crypto.x509
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ca import lint
from ca.config import PkiUrls
from ca.profiles import (
    Issuer,
    build_certificate,
    ca_subject,
    issuing_ca_profile,
    root_profile,
    sign_certificate,
    signature_hash,
)
from revocation.crl import CRLEntry, build_crl, build_revoked_certificate, sign_crl

URLS = PkiUrls("http://pki.ehrca.test")
THIS_UPDATE = dt.datetime(2026, 11, 29, 9, 0, 0, 250000, tzinfo=dt.UTC)
NEXT_UPDATE = THIS_UPDATE + dt.timedelta(hours=24)
HKT = dt.timezone(dt.timedelta(hours=8))
ZONES = st.sampled_from([dt.UTC, HKT, dt.timezone(dt.timedelta(hours=-5))])
TIMES = st.datetimes(
    min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2026, 11, 28), timezones=ZONES
)


@functools.cache
def issuing_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = sign_certificate(
        build_certificate(
            root_profile(dt.timedelta(days=20 * 365)),
            subject=ca_subject("eHR Secure Connection", "CRL Test Root"),
            public_key=root_key.public_key(),
            serial_number=1,
            not_valid_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            issuer=None,
            urls=URLS,
        ),
        root_key,
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = sign_certificate(
        build_certificate(
            issuing_ca_profile(dt.timedelta(days=10 * 365)),
            subject=ca_subject("eHR Secure Connection", "CRL Test Issuing CA"),
            public_key=key.public_key(),
            serial_number=2,
            not_valid_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            issuer=Issuer(root, "root-ca"),
            urls=URLS,
        ),
        root_key,
    )
    return key, certificate


def issuer_ski(certificate: x509.Certificate) -> bytes:
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def signed_crl(entries: list[CRLEntry], *, crl_number: int = 1) -> bytes:
    key, certificate = issuing_ca()
    builder = build_crl(
        certificate,
        entries,
        crl_number=crl_number,
        this_update=THIS_UPDATE,
        next_update=NEXT_UPDATE,
    )
    return sign_crl(builder, key).public_bytes(serialization.Encoding.DER)


def reference_tbs(entries: list[CRLEntry], *, crl_number: int) -> bytes:
    """The to-be-signed CRL built directly with cryptography (UTC, whole seconds)."""
    key, certificate = issuing_ca()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(certificate.subject)
        .last_update(dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC))
        .next_update(dt.datetime(2026, 11, 30, 9, 0, 0, tzinfo=dt.UTC))
        .add_extension(
            x509.AuthorityKeyIdentifier(issuer_ski(certificate), None, None), critical=False
        )
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial_number)
            .revocation_date(entry.revocation_date.astimezone(dt.UTC).replace(microsecond=0))
        )
        if entry.revocation_reason is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(entry.revocation_reason), critical=False)
        if entry.invalidity_date is not None:
            revoked = revoked.add_extension(
                x509.InvalidityDate(
                    entry.invalidity_date.astimezone(dt.UTC).replace(microsecond=0)
                ),
                critical=False,
            )
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(key, signature_hash(key)).tbs_certlist_bytes


ENTRY = st.builds(
    CRLEntry,
    serial_number=st.integers(min_value=1, max_value=2**159 - 1),
    revocation_date=TIMES,
    revocation_reason=st.sampled_from(list(x509.ReasonFlags)),
    invalidity_date=st.none() | TIMES,
)


@settings(max_examples=50, deadline=None)
@given(
    entries=st.lists(ENTRY, max_size=12, unique_by=lambda e: e.serial_number),
    crl_number=st.integers(min_value=1, max_value=2**159 - 1),
)
@example(
    entries=[
        CRLEntry(
            0x1234,
            dt.datetime(2026, 11, 29, 8, 30, 0, 999999, tzinfo=HKT),
            x509.ReasonFlags.key_compromise,
            dt.datetime(2026, 11, 28, 23, 0, 0, 500000, tzinfo=HKT),
        )
    ],
    crl_number=1,
)
def test_entries_equal_the_revoked_set(entries: list[CRLEntry], crl_number: int) -> None:
    _, certificate = issuing_ca()
    der = signed_crl(entries, crl_number=crl_number)
    crl = x509.load_der_x509_crl(der)

    issuer_public_key = certificate.public_key()
    assert isinstance(issuer_public_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(issuer_public_key)
    assert crl.issuer == certificate.subject
    assert crl.last_update_utc == dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)
    assert crl.next_update_utc == dt.datetime(2026, 11, 30, 9, 0, 0, tzinfo=dt.UTC)
    assert {e.oid for e in crl.extensions} == {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
    }
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == crl_number
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuer_ski(certificate)

    assert len(crl) == len(entries)
    for revoked, entry in zip(crl, entries, strict=True):
        assert revoked.serial_number == entry.serial_number
        assert revoked.revocation_date_utc == entry.revocation_date.astimezone(dt.UTC).replace(
            microsecond=0
        )
        expected_oids = set()
        if entry.revocation_reason is x509.ReasonFlags.unspecified:
            with pytest.raises(x509.ExtensionNotFound):
                revoked.extensions.get_extension_for_class(x509.CRLReason)
        else:
            expected_oids.add(CRLEntryExtensionOID.CRL_REASON)
            reason = revoked.extensions.get_extension_for_class(x509.CRLReason)
            assert not reason.critical
            assert reason.value.reason is entry.revocation_reason
        if entry.invalidity_date is not None:
            expected_oids.add(CRLEntryExtensionOID.INVALIDITY_DATE)
            invalidity = revoked.extensions.get_extension_for_class(x509.InvalidityDate)
            assert not invalidity.critical
            assert invalidity.value.invalidity_date_utc == entry.invalidity_date.astimezone(
                dt.UTC
            ).replace(microsecond=0)
        assert {e.oid for e in revoked.extensions} == expected_oids

    assert crl.tbs_certlist_bytes == reference_tbs(entries, crl_number=crl_number)


def test_empty_crl_has_no_revoked_certificates_and_lints_clean() -> None:
    der = signed_crl([])
    tbs = asn1crypto.crl.CertificateList.load(der)["tbs_cert_list"]
    revoked = tbs["revoked_certificates"]
    assert revoked.contents == b""  # absent field (asn1crypto Void), not an empty SEQUENCE
    assert revoked.native is None
    assert tbs["version"].native == "v2"
    assert len(x509.load_der_x509_crl(der)) == 0
    assert lint.blocking(lint.lint_crl(der)) == []


def test_crl_with_entries_lints_clean() -> None:
    reasons = [r for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl]
    entries = [
        CRLEntry(
            0x10_0000_0000_0000_0000 + i,
            dt.datetime(2026, 11, 28, 12, 0, i, tzinfo=dt.UTC),
            reason,
            dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
            if reason is x509.ReasonFlags.key_compromise
            else None,
        )
        for i, reason in enumerate(reasons)
    ]
    der = signed_crl(entries, crl_number=42)
    assert lint.blocking(lint.lint_crl(der)) == []
    # The issuer name is the issuer certificate's subject, byte for byte.
    _, certificate = issuing_ca()
    assert (
        asn1crypto.crl.CertificateList.load(der)["tbs_cert_list"]["issuer"].dump()
        == asn1crypto.x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))[
            "tbs_certificate"
        ]["subject"].dump()
    )


def test_revoked_certificate_entry_values() -> None:
    revoked = build_revoked_certificate(
        CRLEntry(
            7,
            dt.datetime(2026, 11, 29, 17, 0, 0, 123, tzinfo=HKT),
            x509.ReasonFlags.superseded,
            dt.datetime(2026, 11, 29, 8, 0, 0, 999999, tzinfo=HKT),
        )
    )
    assert revoked.revocation_date_utc == dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)
    invalidity = revoked.extensions.get_extension_for_class(x509.InvalidityDate).value
    assert invalidity.invalidity_date_utc == dt.datetime(2026, 11, 29, 0, 0, 0, tzinfo=dt.UTC)
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.superseded
    )


@pytest.mark.parametrize("crl_number", [0, -1])
def test_crl_number_must_be_positive(crl_number: int) -> None:
    _, certificate = issuing_ca()
    with pytest.raises(ValueError, match="CRL number must be positive"):
        build_crl(
            certificate, [], crl_number=crl_number, this_update=THIS_UPDATE, next_update=NEXT_UPDATE
        )


@pytest.mark.parametrize(
    "next_update",
    [
        THIS_UPDATE,
        THIS_UPDATE - dt.timedelta(seconds=1),
        THIS_UPDATE - dt.timedelta(days=1),
        # Later by a fraction only: both are whole seconds on the CRL, so equal.
        THIS_UPDATE + dt.timedelta(microseconds=500_000),
    ],
)
def test_next_update_must_be_after_this_update(next_update: dt.datetime) -> None:
    _, certificate = issuing_ca()
    with pytest.raises(ValueError, match="nextUpdate must be later than thisUpdate"):
        build_crl(certificate, [], crl_number=1, this_update=THIS_UPDATE, next_update=next_update)

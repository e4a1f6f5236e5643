"""The fast CRL assembler (revocation.crl_der) against cryptography's CRL builder:
same entries, same semantics; DER that pkilint and OpenSSL accept."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca import lint
from ca.config import PkiUrls
from ca.keys import PrivateKey
from ca.profiles import build_certificate, ca_subject, root_profile, sign_certificate
from revocation.crl import CRLEntry, build_crl, sign_crl
from revocation.crl_der import assemble_crl, der_header, der_time, encode_crl_entry

NOW = dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)
REASONS = [r for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl]


def _ca(key: PrivateKey) -> x509.Certificate:
    builder = build_certificate(
        root_profile(dt.timedelta(days=3650)),
        subject=ca_subject("eHR Secure Connection", "中文 Test CA"),
        public_key=key.public_key(),
        serial_number=2**70 + 1,
        not_valid_before=NOW,
        issuer=None,
        urls=PkiUrls("http://127.0.0.1:8000"),
    )
    return sign_certificate(builder, key)


EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_CA = _ca(EC_KEY)

times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2060, 12, 31),
    timezones=st.just(dt.UTC),
).map(lambda t: t.replace(microsecond=0))
entries_strategy = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=2**159 - 1),
        times,
        st.sampled_from(REASONS),
        st.none() | times,
    ),
    max_size=30,
    unique_by=lambda e: e[0],
)


def _semantics(
    crl: x509.CertificateRevocationList,
) -> list[tuple[int, dt.datetime, object, object]]:
    result = []
    for entry in crl:
        try:
            reason: object = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        try:
            invalid: object = entry.extensions.get_extension_for_class(
                x509.InvalidityDate
            ).value.invalidity_date_utc
        except x509.ExtensionNotFound:
            invalid = None
        result.append((entry.serial_number, entry.revocation_date_utc, reason, invalid))
    return sorted(result, key=lambda r: r[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=entries_strategy, crl_number=st.integers(min_value=1, max_value=2**159 - 1))
def test_same_semantics_as_cryptography(
    entries: list[tuple[int, dt.datetime, x509.ReasonFlags, dt.datetime | None]], crl_number: int
) -> None:
    this_update, next_update = NOW, NOW + dt.timedelta(hours=24)
    fast = x509.load_der_x509_crl(
        assemble_crl(
            EC_CA,
            EC_KEY,
            [encode_crl_entry(*e) for e in entries],
            crl_number=crl_number,
            this_update=this_update,
            next_update=next_update,
        )
    )
    reference = sign_crl(
        build_crl(
            EC_CA,
            [CRLEntry(*e) for e in entries],
            crl_number=crl_number,
            this_update=this_update,
            next_update=next_update,
        ),
        EC_KEY,
    )
    assert fast.is_signature_valid(EC_KEY.public_key())
    assert _semantics(fast) == _semantics(reference)
    assert fast.issuer.public_bytes() == EC_CA.subject.public_bytes()
    assert fast.last_update_utc == this_update and fast.next_update_utc == next_update
    assert list(fast.extensions) == list(reference.extensions)
    assert fast.signature_algorithm_oid == reference.signature_algorithm_oid
    # Byte-identical TBSCertList: only the (randomised ECDSA) signature differs.
    assert fast.tbs_certlist_bytes == reference.tbs_certlist_bytes


def test_empty_crl_omits_the_revoked_list_and_lints_clean() -> None:
    der = assemble_crl(
        EC_CA, EC_KEY, [], crl_number=1, this_update=NOW, next_update=NOW + dt.timedelta(days=1)
    )
    reference = sign_crl(
        build_crl(EC_CA, [], crl_number=1, this_update=NOW, next_update=NOW + dt.timedelta(days=1)),
        EC_KEY,
    )
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == 0
    assert crl.tbs_certlist_bytes == reference.tbs_certlist_bytes
    assert lint.blocking(lint.lint_crl(der)) == []


@pytest.mark.parametrize("key_type", ["ec-p384", "rsa-2048"])
def test_lints_clean_and_openssl_verifies(tmp_path: Path, key_type: str) -> None:
    key: PrivateKey = (
        ec.generate_private_key(ec.SECP384R1())
        if key_type == "ec-p384"
        else rsa.generate_private_key(65537, 2048)
    )
    ca = _ca(key)
    entries = [
        encode_crl_entry(
            2**64 + 5, NOW, x509.ReasonFlags.key_compromise, NOW - dt.timedelta(days=1)
        ),
        encode_crl_entry(2**158, NOW, x509.ReasonFlags.unspecified),
        encode_crl_entry(17, NOW, x509.ReasonFlags.cessation_of_operation),
    ]
    der = assemble_crl(
        ca, key, entries, crl_number=2**64, this_update=NOW, next_update=NOW + dt.timedelta(days=1)
    )
    assert lint.blocking(lint.lint_crl(der)) == []
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "crl.der").write_bytes(der)
    out = subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(tmp_path / "crl.der"),
            "-noout",
            "-CAfile",
            str(tmp_path / "ca.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and "verify OK" in out.stdout + out.stderr


def test_time_and_length_encodings() -> None:
    assert (
        der_time(dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)) == b"\x17\x0d491231235959Z"
    )
    assert der_time(dt.datetime(2050, 1, 1, tzinfo=dt.UTC)) == b"\x18\x0f20500101000000Z"
    assert der_header(0x30, 0x7F) == b"\x30\x7f"
    assert der_header(0x30, 0x80) == b"\x30\x81\x80"
    assert der_header(0x30, 52_000_236) == b"\x30\x84" + (52_000_236).to_bytes(4, "big")
    with pytest.raises(ValueError, match="timezone-aware"):
        der_time(dt.datetime(2026, 1, 1))


def test_refusals() -> None:
    with pytest.raises(ValueError, match="removeFromCRL"):
        encode_crl_entry(5, NOW, x509.ReasonFlags.remove_from_crl)
    with pytest.raises(ValueError, match="20 octets"):
        encode_crl_entry(2**159, NOW, x509.ReasonFlags.unspecified)
    with pytest.raises(ValueError, match="nextUpdate"):
        assemble_crl(EC_CA, EC_KEY, [], crl_number=1, this_update=NOW, next_update=NOW)
    with pytest.raises(ValueError, match="CRL number"):
        assemble_crl(
            EC_CA, EC_KEY, [], crl_number=0, this_update=NOW, next_update=NOW + dt.timedelta(1)
        )

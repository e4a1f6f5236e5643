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
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ca import lint
from ca.config import PkiUrls
from ca.keys import PrivateKey
from ca.profiles import build_certificate, ca_subject, root_profile, sign_certificate
from revocation.crl import CRLEntry, build_crl, sign_crl
from revocation.crl_der import (
    assemble_crl,
    der_generalized_time,
    der_header,
    der_time,
    encode_crl_entry,
)

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


# ----------------------------------------------------------------------------- length boundaries

#: DER length-encoding boundaries (X.690 8.1.3): one length octet up to 127, then
#: 0x81 up to 255, 0x82 up to 65535, 0x83 from 65536.
BOUNDARIES = (128, 256, 65536)


def _entry_of_size(size: int, index: int) -> tuple[int, dt.datetime, x509.ReasonFlags, None]:
    """An ``unspecified`` entry whose DER is exactly ``size`` (20..39) octets: the
    serial's INTEGER content is ``size - 19`` octets; ``index`` keeps serials unique."""
    octets = size - 19
    assert 1 <= octets <= 20
    serial = index + 1 if octets == 1 else 2 ** (8 * octets - 8) + index
    entry = (serial, NOW, x509.ReasonFlags.unspecified, None)
    assert len(encode_crl_entry(*entry)) == size
    return entry


def _entries_totalling(
    length: int,
) -> list[tuple[int, dt.datetime, x509.ReasonFlags, dt.datetime | None]]:
    """Entries whose DER add up to exactly ``length`` octets (0 or at least 20)."""
    sizes: list[int] = []
    remaining = length
    while remaining > 59:
        sizes.append(39)
        remaining -= 39
    if 40 <= remaining <= 59:
        sizes += [20, remaining - 20]
    elif remaining:
        sizes.append(remaining)
    # Numbered per size class so serials never collide (few one-octet serials).
    counts: dict[int, int] = {}
    entries: list[tuple[int, dt.datetime, x509.ReasonFlags, dt.datetime | None]] = []
    for size in sizes:
        entries.append(_entry_of_size(size, counts.get(size, 0)))
        counts[size] = counts.get(size, 0) + 1
    return entries


def _lengths(der: bytes) -> tuple[int, int, int]:
    """(revokedCertificates, TBSCertList, CertificateList) content lengths of a CRL,
    read back with cryptography and asn1crypto, not with the assembler's arithmetic."""
    from asn1crypto import crl as asn1_crl

    parsed = asn1_crl.CertificateList.load(der)
    tbs = parsed["tbs_cert_list"]
    revoked = tbs["revoked_certificates"]
    revoked_length = len(revoked.contents) if revoked.contents is not None else 0
    return revoked_length, len(tbs.contents), len(parsed.contents)


def _overheads(ca: x509.Certificate, key: PrivateKey) -> tuple[int, int]:
    """TBSCertList and CertificateList content lengths of the empty CRL."""
    empty = assemble_crl(
        ca, key, [], crl_number=7, this_update=NOW, next_update=NOW + dt.timedelta(hours=24)
    )
    _, tbs, outer = _lengths(empty)
    return tbs, outer


def _candidate_lengths(ca: x509.Certificate, key: PrivateKey) -> list[int]:
    """revokedCertificates lengths that put the revoked list, the TBSCertList or the
    whole CRL within a few octets of each boundary."""
    tbs_overhead, outer_overhead = _overheads(ca, key)
    candidates: set[int] = set()
    for boundary in BOUNDARIES:
        for base in (boundary, boundary - tbs_overhead, boundary - outer_overhead):
            candidates.update(n for n in range(base - 12, base + 12) if n >= 20)
    return sorted(candidates)


CANDIDATE_LENGTHS = _candidate_lengths(EC_CA, EC_KEY)


def _assert_same_as_cryptography(
    entries: list[tuple[int, dt.datetime, x509.ReasonFlags, dt.datetime | None]],
    ca: x509.Certificate = EC_CA,
    key: PrivateKey = EC_KEY,
) -> tuple[int, int, int]:
    this_update, next_update = NOW, NOW + dt.timedelta(hours=24)
    der = assemble_crl(
        ca,
        key,
        iter([b"".join(encode_crl_entry(*e) for e in entries)]),
        crl_number=7,
        this_update=this_update,
        next_update=next_update,
    )
    fast = x509.load_der_x509_crl(der)
    reference = sign_crl(
        build_crl(
            ca,
            [CRLEntry(*e) for e in entries],
            crl_number=7,
            this_update=this_update,
            next_update=next_update,
        ),
        key,
    )
    assert fast.is_signature_valid(key.public_key())
    assert fast.tbs_certlist_bytes == reference.tbs_certlist_bytes
    assert _semantics(fast) == _semantics(reference)
    assert len(fast) == len(entries)
    for entry in entries[:3] + entries[-3:]:
        found = fast.get_revoked_certificate_by_serial_number(entry[0])
        assert found is not None and found.revocation_date_utc == entry[1]
    return _lengths(der)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.sampled_from(CANDIDATE_LENGTHS), first=entries_strategy.filter(lambda e: e != []))
def test_lengths_around_the_der_length_boundaries_match_cryptography(
    length: int,
    first: list[tuple[int, dt.datetime, x509.ReasonFlags, dt.datetime | None]],
) -> None:
    """An arbitrary first entry (any reason, invalidityDate, time encoding) followed by
    filler entries summing to a length near 128, 256 or 65536 for the revoked list, the
    TBSCertList or the whole CRL: byte-identical TBSCertList to cryptography's builder."""
    filler = _entries_totalling(length)
    assume(all(entry[0] != first[0][0] for entry in filler))
    _assert_same_as_cryptography([first[0], *filler])


@pytest.fixture(scope="module")
def rsa_ca() -> tuple[x509.Certificate, PrivateKey]:
    """An RSA-2048 CA: its signatures are always 256 octets, so the CertificateList
    length is exact (ECDSA's DER signature varies by a few octets)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _ca(key), key


@pytest.mark.parametrize(
    ("which", "boundary"),
    # With this RSA CA the empty CRL's TBSCertList is 169 and its CertificateList 448
    # content octets, so smaller boundaries cannot be met by those two.
    [
        ("revoked", 128),
        ("revoked", 256),
        ("revoked", 65536),
        ("tbs", 256),
        ("tbs", 65536),
        ("outer", 65536),
    ],
)
def test_each_length_boundary_is_crossed_exactly(
    boundary: int, which: str, rsa_ca: tuple[x509.Certificate, PrivateKey]
) -> None:
    """The revoked list, the TBSCertList and the CertificateList each at exactly
    ``boundary - 1`` and ``boundary`` content octets (one more length octet)."""
    ca, key = rsa_ca
    assert _overheads(ca, key) == (169, 448)
    index = ("revoked", "tbs", "outer").index(which)
    hit: set[int] = set()
    for length in _candidate_lengths(ca, key):
        if abs(length - boundary) > 1024:
            continue
        lengths = _lengths(
            assemble_crl(
                ca,
                key,
                [encode_crl_entry(*e) for e in _entries_totalling(length)],
                crl_number=7,
                this_update=NOW,
                next_update=NOW + dt.timedelta(hours=24),
            )
        )
        if lengths[index] in (boundary - 1, boundary):
            assert _assert_same_as_cryptography(_entries_totalling(length), ca, key) == lengths
            hit.add(lengths[index])
    assert hit == {boundary - 1, boundary}


def test_a_naive_invalidity_date_is_refused_not_read_as_local_time() -> None:
    """encode_crl_entry promises ValueError for naive times; a naive invalidityDate
    was silently converted from the host's local time zone."""
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_crl_entry(5, NOW, x509.ReasonFlags.superseded, dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        der_generalized_time(dt.datetime(2026, 1, 1))
    assert der_generalized_time(
        dt.datetime(2026, 1, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    ) == (b"\x18\x0f20260101000000Z")

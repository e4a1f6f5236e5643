"""Tests for ca.serials: random serial range, fixed-width hex and its parser, and the
DER size of a serial inside a certificate (RFC 5280 4.1.2.2: at most 20 octets)."""

from __future__ import annotations

import datetime as dt
import functools

import asn1crypto.x509
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ca.serials import SERIAL_HEX_WIDTH, generate_serial_number, parse_serial_hex, serial_to_hex

LOWEST = 1
HIGHEST = 2**159 - 1
SERIALS = st.integers(min_value=LOWEST, max_value=HIGHEST)


@functools.cache
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate_with_serial(serial_number: int) -> bytes:
    key = signing_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "serial test")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial_number)
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


@settings(max_examples=50)
@given(st.data())
def test_generate_serial_number_in_range(data: st.DataObject) -> None:
    del data  # one fresh draw per example; hypothesis only repeats the call
    serial_number = generate_serial_number()
    assert 2**64 <= serial_number <= HIGHEST


def test_generate_serial_number_uses_the_high_bits() -> None:
    serials = [generate_serial_number() for _ in range(2000)]
    assert len(set(serials)) == len(serials)
    # With 159 random bits, 2,000 draws all below 2**150 has probability 2**-18000.
    assert max(serials).bit_length() > 150
    assert all(s.bit_length() <= 159 for s in serials)


def test_generate_serial_number_redraws_below_2_64(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([0, 2**64 - 1, 2**64])
    monkeypatch.setattr("ca.serials.secrets.randbits", lambda bits: next(draws))
    assert generate_serial_number() == 2**64


@given(SERIALS)
@example(LOWEST)
@example(HIGHEST)
@example(2**64)
def test_hex_round_trip(serial_number: int) -> None:
    text = serial_to_hex(serial_number)
    assert len(text) == SERIAL_HEX_WIDTH == 40
    assert text == text.lower()
    assert all(c in "0123456789abcdef" for c in text)
    assert int(text, 16) == serial_number
    assert parse_serial_hex(text) == serial_number
    assert parse_serial_hex(text.upper()) == serial_number
    assert parse_serial_hex("0x" + text) == serial_number
    assert parse_serial_hex("0X" + text.upper()) == serial_number
    colons = ":".join(text[i : i + 2] for i in range(0, len(text), 2))
    assert parse_serial_hex(colons) == serial_number
    assert parse_serial_hex(f"  {colons.upper()}\n") == serial_number
    assert parse_serial_hex(format(serial_number, "x")) == serial_number  # no leading zeros


def test_serial_to_hex_values() -> None:
    assert serial_to_hex(1) == "0" * 39 + "1"
    assert serial_to_hex(HIGHEST) == "7" + "f" * 39
    assert serial_to_hex(0xABCDEF) == "0" * 34 + "abcdef"


@pytest.mark.parametrize("value", [0, -1, -(2**64), 2**159, 2**160, 2**200])
def test_serial_to_hex_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="RFC 5280"):
        serial_to_hex(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0x",
        ":",
        "0" * 40,  # zero
        "8" + "0" * 39,  # 2**159
        "f" * 40,
        "1" + "0" * 40,  # 41 digits
        "xyz",
        "12g4",
        "-1",
        "+1",
        "1 2",
        "١٢",  # Arabic-Indic digits: int() would take them
        "１２",  # full-width digits
        "0x0x12",
    ],
)
def test_parse_serial_hex_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_serial_hex(text)


@given(st.text(alphabet="0123456789abcdefABCDEFxX: \t\n-١g", max_size=45) | st.text(max_size=45))
def test_parse_serial_hex_only_value_error(text: str) -> None:
    try:
        value = parse_serial_hex(text)
    except ValueError:
        return
    assert LOWEST <= value <= HIGHEST
    assert serial_to_hex(value) == text.strip().lower().removeprefix("0x").replace(":", "").rjust(
        40, "0"
    )


@settings(max_examples=50, deadline=None)
@given(SERIALS)
@example(HIGHEST)
@example(2**64)
@example(2**152)  # top bit of an octet set: DER needs no sign octet up to 2**159 - 1
def test_der_serial_at_most_20_octets(serial_number: int) -> None:
    der = certificate_with_serial(serial_number)
    serial = asn1crypto.x509.Certificate.load(der)["tbs_certificate"]["serial_number"]
    octets: bytes = serial.contents
    assert 1 <= len(octets) <= 20
    assert octets[0] < 0x80  # positive
    assert int.from_bytes(octets, "big") == serial_number
    assert x509.load_der_x509_certificate(der).serial_number == serial_number


def test_generated_serials_fit_in_der() -> None:
    for _ in range(20):
        serial_number = generate_serial_number()
        der = certificate_with_serial(serial_number)
        tbs = asn1crypto.x509.Certificate.load(der)["tbs_certificate"]
        assert len(tbs["serial_number"].contents) <= 20

"""Tests for registration.rules: HKID check digits, business registration numbers,
phone numbers, document requirements and districts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registration.rules import (
    DISTRICTS,
    DOCUMENT_KINDS,
    LANGUAGES,
    PROVIDER_TYPES,
    REQUIRED_DOCUMENTS,
    check_business_registration_number,
    check_hkid,
    check_phone,
)


def reference_check_digit(letters: str, digits: str) -> str:
    """The HKID check digit, written independently: a one-letter prefix counts as a
    leading space worth 36 (weights 9..2, modulo 11, 10 → A)."""
    padded = letters.rjust(2)
    values = [36 if c == " " else 10 + ord(c) - ord("A") for c in padded]
    values += [int(d) for d in digits]
    remainder = sum(v * w for v, w in zip(values, [9, 8, 7, 6, 5, 4, 3, 2], strict=True)) % 11
    check = 11 - remainder
    return {10: "A", 11: "0"}.get(check, str(check))


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("A123456(3)", "A1234563"),
        ("Y765432(2)", "Y7654322"),
        ("Z111222(9)", "Z1112229"),
        ("K234567(6)", "K2345676"),
        ("A1234563", "A1234563"),  # brackets optional
        ("a123456(3)", "A1234563"),  # case
        (" A 123456 (3) ", "A1234563"),  # spaces
        ("AB987654(3)", "AB9876543"),  # two-letter prefix
        ("XA000000(8)", "XA0000008"),
        ("C000005(A)", "C000005A"),  # check digit 10 → A
        ("c000005(a)", "C000005A"),
        ("C000005A", "C000005A"),
        ("B000003(0)", "B0000030"),  # remainder 0 → 0
    ],
)
def test_valid_hkid(value: str, normalised: str) -> None:
    assert check_hkid(value) == normalised


@pytest.mark.parametrize(
    "value",
    [
        "A123456(4)",
        "A123456(A)",
        "Y765432(3)",
        "Z111222(0)",
        "K234567(5)",
        "AB987654(2)",
        "C000005(0)",
        "C000005(1)",
        "B000003(A)",
    ],
)
def test_wrong_check_digit(value: str) -> None:
    with pytest.raises(ValueError, match="wrong check digit"):
        check_hkid(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "123456(7)",  # no letter
        "ABC123456(7)",  # three letters
        "A12345(6)",  # five digits
        "A1234567(8)",  # seven digits
        "A123456(B)",  # only A may be a letter check digit
        "A123456()",
        "1A23456(3)",
        "A123456[3]",
        "Ａ123456(3)",  # full-width letter
        "A１２３４５６(3)",  # full-width digits
        "A١٢٣٤٥٦(3)",  # Arabic-Indic digits (\d matches them without re.ASCII)
    ],
)
def test_malformed_hkid(value: str) -> None:
    with pytest.raises(ValueError, match="like A123456"):
        check_hkid(value)


@given(
    letters=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=2),
    digits=st.text(alphabet="0123456789", min_size=6, max_size=6),
    check=st.sampled_from("0123456789A"),
    brackets=st.booleans(),
)
def test_hkid_check_digit_property(letters: str, digits: str, check: str, brackets: bool) -> None:
    value = f"{letters}{digits}({check})" if brackets else f"{letters}{digits}{check}"
    if check == reference_check_digit(letters, digits):
        assert check_hkid(value) == f"{letters}{digits}{check}"
        assert check_hkid(value.lower()) == f"{letters}{digits}{check}"
    else:
        with pytest.raises(ValueError, match="wrong check digit"):
            check_hkid(value)


def test_reference_check_digit_agrees_with_published_examples() -> None:
    assert reference_check_digit("A", "123456") == "3"
    assert reference_check_digit("Y", "765432") == "2"
    assert reference_check_digit("Z", "111222") == "9"
    assert reference_check_digit("K", "234567") == "6"


@pytest.mark.parametrize(
    ("value", "expected"), [("12345678", "12345678"), (" 00000001 ", "00000001")]
)
def test_business_registration_number_valid(value: str, expected: str) -> None:
    assert check_business_registration_number(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1234567",
        "123456789",
        "1234567a",
        "1234-5678",
        "12 345678",
        "１２３４５６７８",  # full-width digits
        "١٢٣٤٥٦٧٨",  # Arabic-Indic digits
    ],
)
def test_business_registration_number_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="8 digits"):
        check_business_registration_number(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("21234567", "21234567"),
        ("9123 4567", "91234567"),
        ("6123-4567", "61234567"),
        ("3 1 2 3 4 5 6 7", "31234567"),
    ],
)
def test_phone_valid(value: str, expected: str) -> None:
    assert check_phone(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "01234567",
        "11234567",
        "2123456",
        "212345678",
        "+85221234567",
        "2123456a",
        "２１２３４５６７",
        "2١٢٣٤٥٦٧",
    ],
)
def test_phone_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="8-digit Hong Kong number"):
        check_phone(value)


def test_every_provider_type_requires_known_documents() -> None:
    assert set(PROVIDER_TYPES) == {
        "private_hospital",
        "non_private_hospital",
        "medical_group",
        "solo_practice",
        "nursing_home",
        "laboratory",
        "pharmacy",
        "other",
    }
    for provider_type in PROVIDER_TYPES:
        required = REQUIRED_DOCUMENTS[provider_type]
        assert len(required) >= 1, provider_type
        assert len(set(required)) == len(required), provider_type
        assert set(required) <= set(DOCUMENT_KINDS), provider_type
    assert "other" in DOCUMENT_KINDS
    assert list(DOCUMENT_KINDS) == sorted(set(DOCUMENT_KINDS))


def test_eighteen_districts() -> None:
    assert len(DISTRICTS) == 18
    assert len(set(DISTRICTS)) == 18
    assert {"Central and Western", "Islands", "Tuen Mun", "Yau Tsim Mong", "North"} <= set(
        DISTRICTS
    )


def test_languages() -> None:
    assert LANGUAGES == ("en", "zh-Hant", "zh-Hans")

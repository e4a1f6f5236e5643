"""Tests for issuance.codes (generate, normalise, hash): the code format, Crockford
normalisation of what people type back, and a uniqueness smoke test."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from issuance.codes import (
    CODE_LENGTH,
    CROCKFORD,
    generate_download_code,
    hash_download_code,
    normalise_download_code,
)

CODE_FORMAT = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){4}$")
CODES = st.text(alphabet=CROCKFORD, min_size=CODE_LENGTH, max_size=CODE_LENGTH).map(
    lambda raw: "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))
)


def test_alphabet_is_crockford() -> None:
    assert CROCKFORD == "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    assert len(set(CROCKFORD)) == 32
    assert not set("ILOU") & set(CROCKFORD)


def test_format() -> None:
    for _ in range(200):
        code = generate_download_code()
        assert len(code) == 24
        assert CODE_FORMAT.match(code), code
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4, 4]


def test_thousand_codes_are_distinct() -> None:
    codes = [generate_download_code() for _ in range(1000)]
    assert len(set(codes)) == 1000
    assert len({hash_download_code(c) for c in codes}) == 1000
    # 20,000 characters: every one of the 32 symbols shows up (each ~625 times).
    counts = Counter("".join(codes).replace("-", ""))
    assert set(counts) == set(CROCKFORD)
    assert min(counts.values()) > 400


def test_hash_is_sha256_of_the_normalised_code() -> None:
    code = "7K3Q-9M2T-ABCD-EFGH-JKMN"
    expected = hashlib.sha256(b"7K3Q9M2TABCDEFGHJKMN").hexdigest()
    assert hash_download_code(code) == expected
    assert len(expected) == 64


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("7k3q-9m2t-abcd-efgh-jkmn", "7K3Q9M2TABCDEFGHJKMN"),
        ("7K3Q 9M2T ABCD EFGH JKMN", "7K3Q9M2TABCDEFGHJKMN"),
        ("  7K3Q9M2TABCDEFGHJKMN\n", "7K3Q9M2TABCDEFGHJKMN"),
        ("10I1-L0lO-o000-1111-iIlL", "10111010000011111111"),
        ("O0oo-----", "0000"),
    ],
)
def test_normalise(typed: str, normalised: str) -> None:
    assert normalise_download_code(typed) == normalised


def typed_variant(code: str, choices: list[int]) -> str:
    """``code`` as someone might type it back, driven by ``choices``."""
    out: list[str] = []
    for i, char in enumerate(code.replace("-", "")):
        choice = choices[i % len(choices)]
        if char == "1":
            char = "1IiLl"[choice % 5]
        elif char == "0":
            char = "0Oo"[choice % 3]
        elif choice % 2:
            char = char.lower()
        out.append(char)
        if i % 4 == 3 and i < CODE_LENGTH - 1:
            out.append(["-", " ", "", " - "][choice % 4])
    return "".join(out)


@given(code=CODES, choices=st.lists(st.integers(0, 59), min_size=1, max_size=20))
def test_typed_variants_hash_the_same(code: str, choices: list[int]) -> None:
    variant = typed_variant(code, choices)
    assert hash_download_code(variant) == hash_download_code(code)
    assert normalise_download_code(variant) == code.replace("-", "")


@given(a=CODES, b=CODES)
def test_different_codes_hash_differently(a: str, b: str) -> None:
    if a != b:
        assert hash_download_code(a) != hash_download_code(b)
    else:
        assert hash_download_code(a) == hash_download_code(b)


@given(st.text(max_size=40))
def test_normalise_and_hash_never_raise(text: str) -> None:
    normalised = normalise_download_code(text)
    assert "-" not in normalised and " " not in normalised
    assert not set("ILOilo") & set(normalised)
    assert re.fullmatch(r"[0-9a-f]{64}", hash_download_code(text))

"""The 13 professions as data: every format accepts its own numbers and no other
profession's, numbers are normalised, and refusals state the rule."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registration.professions import (
    PROFESSION_CODES,
    PROFESSIONS,
    RegistrationFormat,
    get_profession,
    normalise_registration_number,
)

#: DESIGN.md, Domain: the 13 professions, in its order.
DESIGN_PROFESSIONS = [
    "doctor",
    "dentist",
    "midwife",
    "nurse",
    "pharmacist",
    "medical_laboratory_technologist",
    "occupational_therapist",
    "optometrist",
    "radiographer",
    "physiotherapist",
    "dental_hygienist",
    "chiropractor",
    "chinese_medicine_practitioner",
]

#: (profession, a valid number as typed, its normalised form, invalid numbers)
CASES = [
    ("doctor", "M12345", "M12345", ["M1234", "M123456", "D12345", "12345"]),
    ("dentist", "d 01234", "D01234", ["D0123", "DH0123", "M01234"]),
    ("midwife", "MW-01234", "MW01234", ["M01234", "MW0123", "RN012345"]),
    ("nurse", "RN123456", "RN123456", ["RN12345", "N123456", "EN1234567"]),
    ("nurse", "en654321", "EN654321", ["EN65432"]),
    ("pharmacist", "P04567", "P04567", ["PT04567", "P4567", "PH04567"]),
    ("medical_laboratory_technologist", "MT02345", "MT02345", ["MLT02345", "MT2345"]),
    ("occupational_therapist", "OT01234", "OT01234", ["OT1234", "0T01234"]),
    ("optometrist", "OP10123", "OP10123", ["OP20123", "OP30123", "OP1012"]),
    ("radiographer", "RG03456", "RG03456", ["RD03456", "RG3456"]),
    ("physiotherapist", "PT04567", "PT04567", ["P04567", "PT4567"]),
    ("dental_hygienist", "DH0123", "DH0123", ["DH01234", "D0123"]),
    ("chiropractor", "CH0123", "CH0123", ["C0123", "CH012"]),
    ("chinese_medicine_practitioner", "001234", "001234", ["01234", "CM001234"]),
    ("chinese_medicine_practitioner", "LP012345", "LP012345", ["LP01234", "L012345"]),
    # Full-width characters from a Chinese input method are read as ASCII.
    ("doctor", "Ｍ１２３４５", "M12345", ["Ｍ１２３４"]),
]


def test_the_13_professions_of_the_design() -> None:
    assert list(PROFESSION_CODES) == DESIGN_PROFESSIONS
    assert len(PROFESSIONS) == 13
    for profession in PROFESSIONS.values():
        assert profession.formats
        assert profession.name("en") == profession.name_en
        assert profession.name("zh-Hant") and profession.name("zh-Hans")
    assert get_profession("optometrist").name_en == "optometrist (Part I)"
    with pytest.raises(KeyError):
        get_profession("surgeon")


@pytest.mark.parametrize(("code", "typed", "normalised", "invalid"), CASES)
def test_each_format_accepts_its_numbers_and_refuses_others(
    code: str, typed: str, normalised: str, invalid: list[str]
) -> None:
    profession = PROFESSIONS[code]
    assert profession.check_registration_number(typed) == normalised
    for number in invalid:
        with pytest.raises(ValueError, match=re.escape(f"{profession.name_en} registration")):
            profession.check_registration_number(number)


def test_refusal_states_every_accepted_format() -> None:
    with pytest.raises(ValueError) as info:
        PROFESSIONS["chinese_medicine_practitioner"].check_registration_number("CMP1")
    assert str(info.value) == (
        "Chinese medicine practitioner registration numbers are 6 digits (registered) "
        "(e.g. 001234) or LP followed by 6 digits (listed) (e.g. LP012345)"
    )


def test_a_format_refuses_an_example_that_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        RegistrationFormat(re.compile(r"M[0-9]{5}"), "M and 5 digits", "M1234")


def test_formats_are_ascii_only() -> None:
    # "\d" would accept Arabic-Indic or Devanagari digits; the patterns do not.
    with pytest.raises(ValueError):
        PROFESSIONS["doctor"].check_registration_number("M١٢٣٤٥")


_numbers = st.sampled_from(
    [(code, f) for code, p in PROFESSIONS.items() for f in p.formats]
).flatmap(lambda pair: st.tuples(st.just(pair[0]), st.from_regex(pair[1].pattern, fullmatch=True)))


@given(_numbers)
def test_a_number_fits_exactly_one_profession(case: tuple[str, str]) -> None:
    code, number = case
    fits = []
    for other in PROFESSIONS.values():
        try:
            other.check_registration_number(number)
        except ValueError:
            continue
        fits.append(other.code)
    assert fits == [code]


@given(_numbers, st.sampled_from(["", " ", "-"]), st.booleans())
def test_normalisation_is_idempotent_and_ignores_case_and_separators(
    case: tuple[str, str], separator: str, lower: bool
) -> None:
    code, number = case
    typed = separator.join(number)
    typed = typed.lower() if lower else typed
    profession = PROFESSIONS[code]
    normalised = profession.check_registration_number(typed)
    assert normalised == number
    assert normalise_registration_number(normalised) == normalised

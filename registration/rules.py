"""Registration rules kept as data: provider types, districts, document requirements,
and the format checks of business registration and identity document numbers."""

from __future__ import annotations

import re

#: Provider types (DESIGN.md, Domain) and the supporting documents each must upload.
REQUIRED_DOCUMENTS: dict[str, tuple[str, ...]] = {
    "private_hospital": ("business_registration_certificate", "hospital_licence"),
    "non_private_hospital": ("hospital_licence", "appointment_letter_of_person_in_charge"),
    "medical_group": (
        "business_registration_certificate",
        "professional_registration_of_person_in_charge",
    ),
    "solo_practice": (
        "business_registration_certificate",
        "professional_registration_of_person_in_charge",
    ),
    "nursing_home": ("business_registration_certificate", "residential_care_home_licence"),
    "laboratory": ("business_registration_certificate", "laboratory_accreditation"),
    "pharmacy": ("business_registration_certificate", "pharmacy_licence"),
    "other": ("business_registration_certificate",),
}
PROVIDER_TYPES = tuple(REQUIRED_DOCUMENTS)
#: Every document kind an applicant may upload (required ones plus supplementary).
DOCUMENT_KINDS = tuple(
    sorted({k for kinds in REQUIRED_DOCUMENTS.values() for k in kinds} | {"other"})
)

#: Hong Kong's 18 districts (District Councils Ordinance, Cap. 547, Schedule 1).
DISTRICTS = (
    "Central and Western",
    "Wan Chai",
    "Eastern",
    "Southern",
    "Yau Tsim Mong",
    "Sham Shui Po",
    "Kowloon City",
    "Wong Tai Sin",
    "Kwun Tong",
    "Kwai Tsing",
    "Tsuen Wan",
    "Tuen Mun",
    "Yuen Long",
    "North",
    "Tai Po",
    "Sha Tin",
    "Sai Kung",
    "Islands",
)
LANGUAGES = ("en", "zh-Hant", "zh-Hans")
OPENING_STATUSES = ("open", "opening_soon", "temporarily_closed")

_BRN = re.compile(r"^\d{8}$")
_PHONE = re.compile(r"^[2-9]\d{7}$")
_HKID = re.compile(r"^([A-Z]{1,2})(\d{6})\(?([0-9A])\)?$")


def check_business_registration_number(value: str) -> str:
    """The 8-digit business registration number (Business Registration Ordinance, Cap. 310).

    Raises:
        ValueError: not exactly 8 digits.
    """
    value = value.strip()
    if not _BRN.match(value):
        raise ValueError("business registration number must be 8 digits")
    return value


def check_phone(value: str) -> str:
    """An 8-digit Hong Kong local number (no country code, first digit 2-9).

    Raises:
        ValueError: otherwise.
    """
    value = value.replace(" ", "").replace("-", "")
    if not _PHONE.match(value):
        raise ValueError("phone must be an 8-digit Hong Kong number")
    return value


def check_hkid(value: str) -> str:
    """Normalise and verify a Hong Kong identity card number, e.g. ``A123456(3)``.

    The check digit is computed with weights 9..2 over the (space-padded) letters and
    digits, modulo 11 (10 → ``A``).

    Returns:
        The normalised form ``A1234563`` (no brackets).

    Raises:
        ValueError: bad format or wrong check digit.
    """
    text = value.strip().upper().replace(" ", "")
    match = _HKID.match(text)
    if match is None:
        raise ValueError(
            "identity document must be a Hong Kong identity card number like A123456(3)"
        )
    letters, digits, check = match.groups()
    letters = letters.rjust(2, " ")
    values = [36 if c == " " else ord(c) - 55 for c in letters] + [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True))
    remainder = (11 - total % 11) % 11
    expected = "A" if remainder == 10 else str(remainder)
    if check != expected:
        raise ValueError("identity document number has a wrong check digit")
    return f"{letters.strip()}{digits}{check}"

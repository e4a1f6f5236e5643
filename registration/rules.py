"""Registration rules kept as data: provider types, districts, document requirements,
and the format checks of business registration and identity document numbers."""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal, get_args

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
ProviderType = Literal[
    "private_hospital",
    "non_private_hospital",
    "medical_group",
    "solo_practice",
    "nursing_home",
    "laboratory",
    "pharmacy",
    "other",
]
PROVIDER_TYPES: tuple[str, ...] = get_args(ProviderType)
if set(PROVIDER_TYPES) != set(REQUIRED_DOCUMENTS):  # pragma: no cover - a data error
    raise RuntimeError("every provider type needs its row in REQUIRED_DOCUMENTS")
#: Every document kind an applicant may upload (required ones plus supplementary).
DOCUMENT_KINDS = tuple(
    sorted({k for kinds in REQUIRED_DOCUMENTS.values() for k in kinds} | {"other"})
)

#: Hong Kong's 18 districts (District Councils Ordinance, Cap. 547, Schedule 1).
District = Literal[
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
]
DISTRICTS: tuple[str, ...] = get_args(District)
#: Mail and preferred languages (BCP 47 tags).
Language = Literal["en", "zh-Hant", "zh-Hans"]
LANGUAGES: tuple[str, ...] = get_args(Language)

#: Time rules (DESIGN.md, Domain), applied by ``registration.tasks``: a registration
#: takes effect this long after the acceptance email (whether or not a certificate has
#: been collected).
EFFECTIVE_AFTER = dt.timedelta(days=14)
#: An application whose requested documents are not supplied (re-submitted) this long
#: after the request lapses.
DOCUMENTS_DEADLINE = dt.timedelta(days=60)
#: An approved or effective registration that has collected no certificate this long
#: after the acceptance email lapses (its download codes stop working).
COLLECTION_DEADLINE = dt.timedelta(days=60)
OpeningStatus = Literal["open", "opening_soon", "temporarily_closed"]
OPENING_STATUSES: tuple[str, ...] = get_args(OpeningStatus)

# re.ASCII: without it \d also matches full-width and other Unicode digits.
_BRN = re.compile(r"^\d{8}$", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_PHONE = re.compile(r"^[2-9]\d{7}$", re.ASCII)
_HKID = re.compile(r"^([A-Z]{1,2})(\d{6})\(?([0-9A])\)?$", re.ASCII)


def check_business_registration_number(value: str) -> str:
    """The 8-digit business registration number (Business Registration Ordinance, Cap. 310).

    Raises:
        ValueError: not exactly 8 digits.
    """
    value = value.strip()
    if not _BRN.match(value):
        raise ValueError("business registration number must be 8 digits")
    return value


def check_single_line(value: str) -> str:
    """A name or title: no control characters (C0, DEL, C1), line breaks included. Names
    go into certificate subjects, and PostgreSQL text cannot hold NUL.

    Raises:
        ValueError: a control character.
    """
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def check_text(value: str) -> str:
    """Free text (addresses, reasons): no control characters but tab, CR and LF.

    Raises:
        ValueError: another control character (NUL included).
    """
    if _CONTROL_BUT_LINE_BREAKS.search(value):
        raise ValueError("must not contain control characters")
    return value


def check_utc(value: dt.datetime) -> dt.datetime:
    """An aware datetime converted to UTC.

    Raises:
        ValueError: no offset, or outside years 1-9999 once in UTC (e.g.
            ``0001-01-01T00:00:00+05:00``).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a timezone offset (use Z for UTC)")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError as exc:
        raise ValueError("is out of range once converted to UTC") from exc


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

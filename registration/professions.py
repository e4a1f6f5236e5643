"""The 13 healthcare professions whose registered members may hold staff accounts
(DESIGN.md, Domain), kept as data, with the format of each register's numbers.

Sources: the professions and their statutory registers are Hong Kong's: the
Medical Registration Ordinance (Cap. 161), Dentists Registration Ordinance
(Cap. 156) and its Ancillary Dental Workers (Dental Hygienists) Regulation
(Cap. 156B), Midwives Registration Ordinance (Cap. 162), Nurses Registration
Ordinance (Cap. 164), Pharmacy and Poisons Ordinance (Cap. 138), Supplementary
Medical Professions Ordinance (Cap. 359: medical laboratory technologists,
occupational therapists, optometrists, radiographers, physiotherapists),
Chiropractors Registration Ordinance (Cap. 428) and Chinese Medicine Ordinance
(Cap. 549).

The **number formats are invented** for ehrca: the real registers use formats that
differ between boards and over time, and none publishes a check-digit rule. They
are chosen so that every format is plausible and no number fits two professions.
Deployments change them here — :data:`PROFESSIONS` is plain data, nothing else in
the code depends on a particular pattern (tests iterate over the table).

A number is normalised before it is checked: Unicode NFKC (full-width letters and
digits typed with a Chinese input method become ASCII), upper case, spaces and
hyphens removed. The normalised form is what is stored.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RegistrationFormat:
    """One accepted shape of a registration number.

    Attributes:
        pattern: full-match regular expression over the normalised number (ASCII only).
        description: the rule in words, shown when a number is refused.
        example: a number that fits (used in messages and tests).
    """

    pattern: re.Pattern[str]
    description: str
    example: str

    def __post_init__(self) -> None:
        if not self.pattern.fullmatch(self.example):
            raise ValueError(f"example {self.example!r} does not fit {self.pattern.pattern!r}")


@dataclass(frozen=True, slots=True)
class Profession:
    """A healthcare profession and how its registration numbers look.

    Attributes:
        code: stable identifier used in the API and the database.
        name_en, name_zh_hant, name_zh_hans: names for mail and screens.
        register: the body that keeps the register (and its ordinance).
        formats: every accepted shape (e.g. registered and listed Chinese medicine
            practitioners); a number must fit one.
    """

    code: str
    name_en: str
    name_zh_hant: str
    name_zh_hans: str
    register: str
    formats: tuple[RegistrationFormat, ...]

    def name(self, language: str) -> str:
        """The profession's name in ``language`` (``en``, ``zh-Hant``, ``zh-Hans``)."""
        return {"zh-Hant": self.name_zh_hant, "zh-Hans": self.name_zh_hans}.get(
            language, self.name_en
        )

    @property
    def rule(self) -> str:
        """Every accepted format in words, joined with "or"."""
        return " or ".join(f"{f.description} (e.g. {f.example})" for f in self.formats)

    def check_registration_number(self, value: str) -> str:
        """Normalise ``value`` and check it against :attr:`formats`.

        Returns:
            The normalised number (e.g. ``" m 12345 "`` → ``"M12345"``).

        Raises:
            ValueError: it fits none of the formats (the message states the rule).
        """
        number = normalise_registration_number(value)
        if not any(f.pattern.fullmatch(number) for f in self.formats):
            raise ValueError(f"{self.name_en} registration numbers are {self.rule}")
        return number


def _fmt(pattern: str, description: str, example: str) -> RegistrationFormat:
    return RegistrationFormat(re.compile(pattern, re.ASCII), description, example)


#: The 13 professions (DESIGN.md order), by code.
PROFESSIONS: dict[str, Profession] = {
    p.code: p
    for p in (
        Profession(
            "doctor",
            "doctor",
            "醫生",
            "医生",
            "Medical Council of Hong Kong (Cap. 161)",
            (_fmt(r"M[0-9]{5}", "M followed by 5 digits", "M12345"),),
        ),
        Profession(
            "dentist",
            "dentist",
            "牙醫",
            "牙医",
            "Dental Council of Hong Kong (Cap. 156)",
            (_fmt(r"D[0-9]{5}", "D followed by 5 digits", "D01234"),),
        ),
        Profession(
            "midwife",
            "midwife",
            "助產士",
            "助产士",
            "Midwives Council of Hong Kong (Cap. 162)",
            (_fmt(r"MW[0-9]{5}", "MW followed by 5 digits", "MW01234"),),
        ),
        Profession(
            "nurse",
            "nurse",
            "護士",
            "护士",
            "Nursing Council of Hong Kong (Cap. 164)",
            (
                _fmt(r"RN[0-9]{6}", "RN followed by 6 digits (registered nurse)", "RN123456"),
                _fmt(r"EN[0-9]{6}", "EN followed by 6 digits (enrolled nurse)", "EN654321"),
            ),
        ),
        Profession(
            "pharmacist",
            "pharmacist",
            "藥劑師",
            "药剂师",
            "Pharmacy and Poisons Board of Hong Kong (Cap. 138)",
            (_fmt(r"P[0-9]{5}", "P followed by 5 digits", "P04567"),),
        ),
        Profession(
            "medical_laboratory_technologist",
            "medical laboratory technologist",
            "醫務化驗師",
            "医务化验师",
            "Medical Laboratory Technologists Board (Cap. 359)",
            (_fmt(r"MT[0-9]{5}", "MT followed by 5 digits", "MT02345"),),
        ),
        Profession(
            "occupational_therapist",
            "occupational therapist",
            "職業治療師",
            "职业治疗师",
            "Occupational Therapists Board (Cap. 359)",
            (_fmt(r"OT[0-9]{5}", "OT followed by 5 digits", "OT01234"),),
        ),
        Profession(
            "optometrist",
            "optometrist (Part I)",
            "視光師（第I部分）",
            "视光师（第I部分）",
            "Optometrists Board, Part I of the register (Cap. 359)",
            (_fmt(r"OP1[0-9]{4}", "OP1 followed by 4 digits (Part I only)", "OP10123"),),
        ),
        Profession(
            "radiographer",
            "radiographer",
            "放射技師",
            "放射技师",
            "Radiographers Board (Cap. 359)",
            (_fmt(r"RG[0-9]{5}", "RG followed by 5 digits", "RG03456"),),
        ),
        Profession(
            "physiotherapist",
            "physiotherapist",
            "物理治療師",
            "物理治疗师",
            "Physiotherapists Board (Cap. 359)",
            (_fmt(r"PT[0-9]{5}", "PT followed by 5 digits", "PT04567"),),
        ),
        Profession(
            "dental_hygienist",
            "dental hygienist",
            "牙齒衞生員",
            "牙齿卫生员",
            "Dental Council of Hong Kong, dental hygienists (Cap. 156B)",
            (_fmt(r"DH[0-9]{4}", "DH followed by 4 digits", "DH0123"),),
        ),
        Profession(
            "chiropractor",
            "chiropractor",
            "脊醫",
            "脊医",
            "Chiropractors Council (Cap. 428)",
            (_fmt(r"CH[0-9]{4}", "CH followed by 4 digits", "CH0123"),),
        ),
        Profession(
            "chinese_medicine_practitioner",
            "Chinese medicine practitioner",
            "中醫",
            "中医",
            "Chinese Medicine Council of Hong Kong (Cap. 549)",
            (
                _fmt(r"[0-9]{6}", "6 digits (registered)", "001234"),
                _fmt(r"LP[0-9]{6}", "LP followed by 6 digits (listed)", "LP012345"),
            ),
        ),
    )
}
PROFESSION_CODES = tuple(PROFESSIONS)


def normalise_registration_number(value: str) -> str:
    """NFKC, upper case, without spaces and hyphens (``"ｍ１２３４５"`` → ``"M12345"``)."""
    text = unicodedata.normalize("NFKC", value).upper()
    return "".join(c for c in text if not c.isspace() and c != "-")


def get_profession(code: str) -> Profession:
    """The profession ``code``.

    Raises:
        KeyError: not one of :data:`PROFESSION_CODES`.
    """
    return PROFESSIONS[code]

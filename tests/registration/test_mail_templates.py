"""Every mail template exists in English, Traditional and Simplified Chinese, the
three use the same variables, and each renders with the context its sender passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest

from issuance.mail import LANGUAGES, render_mail

TEMPLATES = Path(__file__).resolve().parents[2] / "issuance" / "templates"
COMMON = {"reference": "HCP-7K3Q9M2T", "provider_name": "海港家庭醫學集團有限公司"}
#: The context each sender passes (registration.service, registration.tasks,
#: registration.changes), beyond ``reference`` and ``provider_name``.
CONTEXTS: dict[str, dict[str, Any]] = {
    "acceptance": {
        "accepted_on": "2026-11-29",
        "effective_on": "2026-12-13",
        "expires_on": "2027-01-28",
        "base_url": "http://127.0.0.1:8000",
    },
    "login_instructions": {
        "accepted_on": "2026-11-29",
        "effective_on": "2026-12-13",
        "expires_on": "2027-01-28",
        "base_url": "http://127.0.0.1:8000",
        "locations": [{"number": 3, "name": "屯門𨋢口診所", "code": "7K3Q-9M2T-ABCD-EFGH-JKMN"}],
    },
    "rejected": {"reason": "營業執照已過期"},
    "documents_requested": {
        "reason": "please upload the hospital licence",
        "deadline_on": "2027-01-28",
        "base_url": "http://127.0.0.1:8000",
    },
    "registration_effective": {"effective_on": "2026-12-13", "accepted_on": "2026-11-29"},
    "lapsed_documents": {"requested_on": "2026-11-29", "deadline_on": "2027-01-28"},
    "lapsed_uncollected": {"accepted_on": "2026-11-29", "deadline_on": "2027-01-28"},
    "location_added": {
        "location_number": 4,
        "location_name": "屯門𨋢口診所",
        "reason": "licence verified",
        "code": "7K3Q-9M2T-ABCD-EFGH-JKMN",
        "expires_on": "2027-01-28",
        "base_url": "http://127.0.0.1:8000",
    },
    "change_rejected": {"location_name": "Tuen Mun Clinic", "reason": "no licence"},
    "location_removed": {
        "location_number": 2,
        "location_name": "深水埗診所",
        "reason": "clinic closed",
    },
    "registration_withdrawn": {"reason": "practice closed"},
}
NAMES = sorted({p.name.split(".", 1)[0] for p in TEMPLATES.glob("*.txt")})
_env = jinja2.Environment(autoescape=False)  # noqa: S701 - parsing only


def _variables(name: str, language: str) -> set[str]:
    source = (TEMPLATES / f"{name}.{language}.txt").read_text(encoding="utf-8")
    return set(jinja2.meta.find_undeclared_variables(_env.parse(source)))


@pytest.mark.parametrize("name", NAMES)
def test_every_template_in_all_three_languages_with_the_same_variables(name: str) -> None:
    for language in LANGUAGES:
        assert (TEMPLATES / f"{name}.{language}.txt").is_file(), f"{name}.{language}.txt"
    english = _variables(name, "en")
    for language in LANGUAGES[1:]:
        assert _variables(name, language) == english, (name, language)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
@pytest.mark.parametrize("language", LANGUAGES)
def test_template_renders_with_its_context(name: str, language: str) -> None:
    context = {**COMMON, **CONTEXTS[name]}
    assert _variables(name, language) <= set(context)
    subject, body = render_mail(name, language, context)
    assert subject and "\n" not in subject and "{" not in subject
    assert COMMON["reference"] in subject
    assert "{{" not in body and "{%" not in body
    assert body.startswith(COMMON["provider_name"]) or body.startswith("Dear ")
    for variable in _variables(name, language) - set(COMMON):
        value = context[variable]
        if isinstance(value, str | int):
            assert str(value) in body, (name, language, variable)
    if language == "en":
        assert body.isascii() or any(ord(c) > 127 for c in COMMON["provider_name"])
    else:
        # Chinese text throughout: the sign-off is the registration office.
        office = "登記辦事處" if language == "zh-Hant" else "登记办事处"
        assert office in body


def test_a_missing_variable_is_an_error_not_a_blank() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_mail("rejected", "zh-Hans", COMMON)

"""User administrators and staff accounts through the HTTP API: invitation →
activation → login, the effective-provider gate, staff accounts for every profession,
one professional at two providers with one login, disabling at one provider only, and
the 404s that keep providers apart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.routes.staff import load_identity_secret
from api.services import Services
from registration.models import Application, ApplicationStatus
from registration.professions import PROFESSIONS
from registration.staff import StaffContext
from tests.conftest import START, FrozenClock
from tests.helpers import (
    APPLICANT_PASSWORD,
    approved_application,
    bearer,
    body_text,
    collect_with_csr,
    login,
    make_csr,
    officer_token,
    outbox_messages,
)

ADMIN_PASSWORD = "user-admin-password-2026"
STAFF_PASSWORD = "professional-password-2026"
CODE = re.compile(r"(?:Activation code|啟用碼|启用码)：?:? *([0-9A-Z-]{24})")


def hkid(prefix: str, digits: str) -> str:
    """A valid HKID with its check digit (weights 9..2 modulo 11)."""
    padded = prefix.rjust(2)
    values = [36 if c == " " else ord(c) - ord("A") + 10 for c in padded] + [int(d) for d in digits]
    check = (11 - sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True)) % 11) % 11
    return f"{prefix}{digits}({'A' if check == 10 else check})"


def mails_to(services: Services, recipient: str) -> list[tuple[str, str]]:
    """``(subject, body)`` of every mail delivered to ``recipient``, in order."""
    messages = [m for m in outbox_messages(services.settings.outbox_dir) if m["To"] == recipient]
    return [(str(m["Subject"]), body_text(m)) for m in messages]


def last_code(services: Services, recipient: str) -> str:
    codes: list[str] = [c for _s, body in mails_to(services, recipient) for c in CODE.findall(body)]
    assert codes, recipient
    return codes[-1]


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def activate(client: TestClient, code: str, identity: str, password: str) -> Any:
    return client.post(
        "/api/v1/people/activate",
        json={"activation_code": code, "identity_document": identity, "password": password},
    )


def make_effective(services: Services, reference: str) -> None:
    """Move an approved application to effective as the time rule would (the rule
    itself is exercised in the first test)."""
    with services.sessions() as session:
        application = session.scalars(
            select(Application).where(Application.reference == reference)
        ).one()
        application.status = ApplicationStatus.EFFECTIVE
        application.effective_at = services.clock()
        session.commit()


def admin_token(
    client: TestClient, services: Services, sample: dict[str, Any], *, effective: bool = True
) -> tuple[str, str]:
    """Approve ``sample``, activate its first user admin; ``(reference, admin token)``."""
    reference, _token, _codes = approved_application(client, services, sample)
    admin = sample["user_admins"][0]
    response = activate(
        client, last_code(services, admin["email"]), admin["identity_document"], ADMIN_PASSWORD
    )
    assert response.status_code == 200, response.text
    if effective:
        make_effective(services, reference)
    return reference, login(client, admin["email"], ADMIN_PASSWORD)


def test_invitation_activation_login_and_the_effective_gate(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    sample = samples[0]  # Dr Chan's clinic, Traditional Chinese
    reference, applicant, codes = approved_application(client, services, sample)
    [(subject, body)] = mails_to(services, "taiman@example.org")
    assert subject == "電子健康紀錄：閣下獲委任為陳大文醫生醫務所的使用者管理員"
    assert "2026-12-13" in body and f"/api/v1/providers/{reference}/staff" in body
    code = CODE.findall(body)[0]

    problem(
        activate(client, "AAAA-BBBB-CCCC-DDDD-EEEE", "A123456(3)", ADMIN_PASSWORD),
        403,
        "activation_code_invalid",
    )
    problem(activate(client, code, "Y765432(2)", ADMIN_PASSWORD), 403, "identity_document_mismatch")
    problem(activate(client, code, "A123456(4)", ADMIN_PASSWORD), 422, "invalid_request")
    problem(activate(client, code, "A123456(3)", "too-short"), 422, "invalid_request")
    done = activate(client, code, "A123456(3)", ADMIN_PASSWORD)
    assert done.status_code == 200, done.text
    assert done.json() == {
        "login": "taiman@example.org",
        "purpose": "user_admin",
        "password_set": True,
    }
    problem(activate(client, code, "A123456(3)", ADMIN_PASSWORD), 409, "activation_code_used")
    invitation = f"/api/v1/applications/{reference}/user-admins/1/invitation"
    problem(client.post(invitation, headers=bearer(applicant)), 409, "user_admin_already_active")
    problem(
        client.post(invitation.replace("/1/", "/2/"), headers=bearer(applicant)),
        404,
        "user_admin_not_found",
    )

    problem(
        client.post("/api/v1/auth/token", data={"username": "taiman@example.org", "password": "x"}),
        401,
        "invalid_credentials",
    )
    token = client.post(
        "/api/v1/auth/token", data={"username": "taiman@example.org", "password": ADMIN_PASSWORD}
    )
    assert token.status_code == 200 and token.json()["role"] == "person"
    admin = token.json()["access_token"]
    me = client.get("/api/v1/me", headers=bearer(admin)).json()
    assert me["kind"] == "person" and me["administers"] == [reference] and me["providers"] == []
    assert me["memberships"][0]["effective"] is False and me["memberships"][0]["user_admin"]

    # Approved is not effective: no staff accounts yet.
    new_staff = {
        "name": "LAU Ming",
        "profession": "doctor",
        "registration_number": "M12345",
        "identity_document": hkid("C", "345678"),
        "email": "lau.ming@example.org",
    }
    url = f"/api/v1/providers/{reference}/staff"
    refused = problem(
        client.post(url, json=new_staff, headers=bearer(admin)), 409, "provider_not_effective"
    )
    assert refused["effective_at_earliest"] == "2026-12-13T09:00:00+00:00"

    # The real time rule: a certificate collected, 14 days after acceptance.
    collect_with_csr(client, reference, applicant, 1, codes[1], make_csr()[1])
    clock.advance(days=14)
    from registration.tasks import apply_time_rules

    with services.sessions() as session:
        assert apply_time_rules(session, now=clock()).effective == [reference]
    problem(client.get("/api/v1/me", headers=bearer(admin)), 401, "not_authenticated")  # expired
    admin = login(client, "taiman@example.org", ADMIN_PASSWORD)
    created = client.post(url, json=new_staff, headers=bearer(admin))
    assert created.status_code == 201, created.text
    assert created.json()["profession"] == "doctor" and created.json()["status"] == "active"
    listed = client.get(url, headers=bearer(admin)).json()
    assert listed["effective"] is True and [a["name"] for a in listed["items"]] == ["LAU Ming"]


def test_one_professional_at_two_providers_with_one_login(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    clinic, clinic_admin = admin_token(client, services, samples[0])  # zh-Hant
    lab, lab_admin = admin_token(client, services, samples[2])  # zh-Hans
    pathologist = hkid("D", "456789")
    body = {
        "name": "MAK Wai Kit",
        "profession": "doctor",
        "registration_number": "M23456",
        "identity_document": pathologist,
        "email": "mak.waikit@example.org",
    }
    at_clinic = client.post(
        f"/api/v1/providers/{clinic}/staff", json=body, headers=bearer(clinic_admin)
    )
    assert at_clinic.status_code == 201, at_clinic.text
    [(subject, text)] = mails_to(services, "mak.waikit@example.org")
    assert subject == "電子健康紀錄：閣下於陳大文醫生醫務所的帳戶"
    assert "M23456" in text and "醫生" in text
    done = activate(client, CODE.findall(text)[0], pathologist, STAFF_PASSWORD)
    assert done.status_code == 200 and done.json()["purpose"] == "staff"

    # The lab opens the same person (by identity card number; another email typed):
    # the account attaches to the existing identity and login.
    at_lab = client.post(
        f"/api/v1/providers/{lab}/staff",
        json=body | {"registration_number": "m 23456", "email": "wk.mak@lab.example"},
        headers=bearer(lab_admin),
    )
    assert at_lab.status_code == 201, at_lab.text
    subject, text = mails_to(services, "mak.waikit@example.org")[-1]
    assert subject == f"电子健康记录：阁下于{samples[2]['provider']['name_zh']}的账户"
    assert CODE.findall(text) == [] and "请一如以往" in text
    assert mails_to(services, "wk.mak@lab.example") == []

    # One login shows both providers.
    professional = login(client, "mak.waikit@example.org", STAFF_PASSWORD)
    me = client.get("/api/v1/me", headers=bearer(professional)).json()
    assert me["providers"] == sorted([clinic, lab]) and me["administers"] == []
    assert {
        (m["reference"], m["profession"], m["registration_number"]) for m in me["memberships"]
    } == {
        (clinic, "doctor", "M23456"),
        (lab, "doctor", "M23456"),
    }
    for reference in (clinic, lab):
        mine = client.get(f"/api/v1/providers/{reference}/staff/me", headers=bearer(professional))
        assert mine.status_code == 200 and mine.json()["status"] == "active"

    # Disabled at the clinic: it cannot act there, the lab account is untouched.
    clinic_id = at_clinic.json()["id"]
    disabled = client.post(
        f"/api/v1/providers/{clinic}/staff/{clinic_id}/disable", headers=bearer(clinic_admin)
    )
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    me = client.get("/api/v1/me", headers=bearer(professional)).json()
    assert me["providers"] == [lab]
    problem(
        client.get(f"/api/v1/providers/{clinic}/staff/me", headers=bearer(professional)),
        403,
        "staff_account_disabled",
    )
    assert (
        client.get(f"/api/v1/providers/{lab}/staff/me", headers=bearer(professional)).json()[
            "status"
        ]
        == "active"
    )
    relogin = client.post(
        "/api/v1/auth/token",
        data={"username": "mak.waikit@example.org", "password": STAFF_PASSWORD},
    )
    assert relogin.status_code == 200  # one password, still valid at the lab

    # Providers are kept apart: the clinic's admin cannot see or touch the lab's staff.
    lab_id = at_lab.json()["id"]
    problem(
        client.get(f"/api/v1/providers/{lab}/staff", headers=bearer(clinic_admin)),
        404,
        "provider_not_found",
    )
    problem(
        client.post(
            f"/api/v1/providers/{lab}/staff/{lab_id}/disable", headers=bearer(clinic_admin)
        ),
        404,
        "provider_not_found",
    )
    problem(
        client.post(
            f"/api/v1/providers/{clinic}/staff/{lab_id}/disable", headers=bearer(clinic_admin)
        ),
        404,
        "staff_account_not_found",
    )
    problem(
        client.post(
            f"/api/v1/providers/{clinic}/staff/{2**40}/disable", headers=bearer(clinic_admin)
        ),
        422,
        "invalid_request",
    )
    lab_list = client.get(f"/api/v1/providers/{lab}/staff", headers=bearer(lab_admin)).json()
    assert [(a["id"], a["status"]) for a in lab_list["items"]] == [(lab_id, "active")]
    # Staff are not user administrators; applicants and officers are not people.
    problem(
        client.post(f"/api/v1/providers/{lab}/staff", json=body, headers=bearer(professional)),
        404,
        "provider_not_found",
    )
    applicant = login(client, clinic, APPLICANT_PASSWORD)
    reviewer = officer_token(client, services, "rita", "reviewer")
    for token in (applicant, reviewer):
        problem(
            client.post(f"/api/v1/providers/{clinic}/staff", json=body, headers=bearer(token)),
            403,
            "person_only",
        )
    # Opening the same person again at the clinic, or the number for someone else.
    problem(
        client.post(f"/api/v1/providers/{clinic}/staff", json=body, headers=bearer(clinic_admin)),
        409,
        "staff_account_exists",
    )
    other = body | {"identity_document": hkid("E", "567890"), "email": "someone@example.org"}
    problem(
        client.post(f"/api/v1/providers/{lab}/staff", json=other, headers=bearer(lab_admin)),
        409,
        "registration_number_in_use",
    )


def test_registration_numbers_of_every_profession(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, admin = admin_token(client, services, samples[1])
    url = f"/api/v1/providers/{reference}/staff"
    codes = list(PROFESSIONS)
    for i, (code, profession) in enumerate(PROFESSIONS.items()):
        person = {
            "name": f"STAFF {i}",
            "profession": code,
            "identity_document": hkid("F", f"{100000 + i:06d}"),
            "email": f"staff{i}@harbour-fm.example",
        }
        # Another profession's number never fits.
        other = PROFESSIONS[codes[(i + 1) % len(codes)]].formats[0].example
        refused = problem(
            client.post(url, json=person | {"registration_number": other}, headers=bearer(admin)),
            422,
            "registration_number_invalid",
        )
        assert refused["profession"] == code
        assert refused["examples"] == [f.example for f in profession.formats]
        assert refused["detail"].startswith(f"{profession.name_en} registration numbers are")
        # Each accepted format, typed with spaces and in lower case, is stored normalised.
        example = profession.formats[-1].example
        typed = " ".join(example.lower())
        created = client.post(
            url, json=person | {"registration_number": typed}, headers=bearer(admin)
        )
        assert created.status_code == 201, created.text
        assert created.json()["registration_number"] == example
    problem(
        client.post(
            url,
            json={
                "name": "X",
                "profession": "surgeon",
                "registration_number": "M12345",
                "identity_document": hkid("G", "123456"),
                "email": "x@example.org",
            },
            headers=bearer(admin),
        ),
        422,
        "profession_unknown",
    )
    listed = client.get(url, headers=bearer(admin)).json()["items"]
    assert sorted(a["profession"] for a in listed) == sorted(codes)
    assert services.clock() == START  # nothing here depends on time passing


def test_identity_secret_is_generated_once_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "identity-hmac.key"
    first = load_identity_secret(path)
    assert len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_identity_secret(path) == first
    path.write_text("abcd\n")
    with pytest.raises(ValueError, match="32 bytes"):
        load_identity_secret(path)
    with pytest.raises(ValueError, match="32"):
        StaffContext(identity_secret=b"short", base_url="http://x")

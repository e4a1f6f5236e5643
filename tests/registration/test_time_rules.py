"""The time rules with a frozen clock, run as ``ehrca tasks run`` runs them
(``api.tasks.run_tasks``): effective 14 days after the acceptance email whether or not
a certificate is collected, lapse 60 days after a documents request, lapse (from
approved or effective) 60 days after acceptance without a collected certificate
(download codes then stop working, the provider leaves the public registry).
Each move is recorded with who (system) and why, and mailed in the application's
language."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.services import Services
from registration.models import Application, ApplicationStatus
from tests.conftest import START, FrozenClock
from tests.helpers import (
    PDF,
    approved_application,
    bearer,
    collect_with_csr,
    make_csr,
    officer_token,
    submitted_application,
)
from tests.registration.flow import (
    decide,
    mail_to,
    outbox,
    relogin,
    run_jobs,
)

JOB = "registration.time_rules"
SECOND = dt.timedelta(seconds=1)


def _status(client: TestClient, reference: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(
        f"/api/v1/applications/{reference}", headers=bearer(relogin(client, reference))
    ).json()
    return body


def _at(clock: FrozenClock, moment: dt.datetime) -> None:
    assert moment >= clock.now
    clock.now = moment


def _registry_total(client: TestClient, q: str) -> int:
    response = client.get("/api/v1/registry", params={"q": q})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def test_effective_14_days_after_acceptance_whether_or_not_a_certificate_is_collected(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    # Two approvals at START: one collects on day 3, the other nothing within 14 days.
    early, _early_token, early_codes = approved_application(client, services, samples[0])
    late, _late_token, late_codes = approved_application(client, services, samples[2])
    accepted = START
    _at(clock, accepted + dt.timedelta(days=3))
    collect_with_csr(client, early, relogin(client, early), 1, early_codes[1], make_csr()[1])

    _at(clock, accepted + dt.timedelta(days=14) - SECOND)
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    assert _status(client, early)["status"] == "approved"
    assert _status(client, late)["status"] == "approved"

    _at(clock, accepted + dt.timedelta(days=14))
    assert (
        run_jobs(services, JOB)[JOB] == "effective 2, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    for reference in (early, late):
        review = _status(client, reference)
        assert review["status"] == "effective"
        assert review["effective_at"] == "2026-12-13T09:00:00Z"
        event = review["events"][-1]
        assert (event["from_status"], event["to_status"], event["actor"], event["reason"]) == (
            "approved",
            "effective",
            "system",
            "14 days after the acceptance email of 2026-11-29",
        )
    mail = mail_to(services, early, "registration_effective")  # zh-Hant
    assert mail.subject == f"電子健康紀錄登記 {early} 已生效"
    assert "已於 2026-12-13 生效" in mail.body and mail.sent_at is not None
    mail = mail_to(services, late, "registration_effective")  # zh-Hans
    assert mail.subject == f"电子健康记录登记 {late} 已生效"
    assert "已于 2026-12-13 生效" in mail.body and mail.sent_at is not None

    # Idempotent: a second run moves nothing and sends nothing.
    before = len(outbox(services))
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    assert len(outbox(services)) == before

    # An effective registration still collects (day 20); its effective_at stays.
    _at(clock, accepted + dt.timedelta(days=20, hours=3))
    collect_with_csr(client, late, relogin(client, late), 1, late_codes[1], make_csr()[1])
    clock.advance(minutes=5)
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    review = _status(client, late)
    assert (review["status"], review["effective_at"]) == ("effective", "2026-12-13T09:00:00Z")
    # With a certificate collected, the collection deadline passes without effect.
    _at(clock, accepted + dt.timedelta(days=61))
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    assert _status(client, early)["status"] == "effective"
    assert _status(client, late)["status"] == "effective"


def test_an_effective_registration_lapses_when_nothing_is_collected_within_60_days(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    reference, _token, codes = approved_application(client, services, samples[1])  # English
    # The job first runs on day 30: effective as of day 14 (the deadline, not the run).
    _at(clock, START + dt.timedelta(days=30, hours=5))
    assert (
        run_jobs(services, JOB)[JOB] == "effective 1, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    review = _status(client, reference)
    assert (review["status"], review["effective_at"]) == ("effective", "2026-12-13T09:00:00Z")
    effective_mail = mail_to(services, reference, "registration_effective")
    assert effective_mail.subject == f"eHR registration {reference} is now effective"
    assert "accepted on 2026-11-29, took effect on\n2026-12-13." in effective_mail.body
    assert _registry_total(client, "harbour") == 1

    _at(clock, START + dt.timedelta(days=60) - SECOND)
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    assert _status(client, reference)["status"] == "effective"

    _at(clock, START + dt.timedelta(days=60))
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 1"
    )
    review = _status(client, reference)
    assert review["status"] == "lapsed"
    assert review["effective_at"] == "2026-12-13T09:00:00Z"
    event = review["events"][-1]
    assert (event["from_status"], event["to_status"], event["actor"]) == (
        "effective",
        "lapsed",
        "system",
    )
    assert event["reason"] == (
        "no certificate was collected within 60 days of the acceptance email of 2026-11-29 "
        "(by 2027-01-28)"
    )
    mail = mail_to(services, reference, "lapsed_uncollected")
    assert mail.subject == f"eHR registration {reference} has lapsed"
    assert "download codes no longer work" in mail.body
    # A lapsed provider leaves the public registry.
    assert _registry_total(client, "harbour") == 0

    # The download codes stop working: a clear 410, and the code is not burnt.
    response = client.post(
        f"/api/v1/applications/{reference}/service-locations/1/certificate",
        json={"download_code": codes[1], "csr": make_csr()[1]},
        headers=bearer(relogin(client, reference)),
    )
    assert response.status_code == 410, response.text
    assert response.json()["code"] == "application_lapsed"
    # Lapsed is final: a reviewer cannot revive it.
    rita = officer_token(client, services, "rita", "reviewer")
    revive = client.post(
        f"/api/v1/officer/applications/{reference}/decision",
        json={"decision": "approve", "reason": "late"},
        headers=bearer(rita),
    )
    assert revive.status_code == 409
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 0"
    )


def test_an_approved_application_first_seen_after_the_collection_deadline_lapses_directly(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    """The job did not run between day 14 and day 60: nothing collected, so no
    ``effective`` step (and no contradicting email) in the same run."""
    reference, _token, _codes = approved_application(client, services, samples[0])
    _at(clock, START + dt.timedelta(days=60))
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 1"
    )
    review = _status(client, reference)
    assert (review["status"], review["effective_at"]) == ("lapsed", None)
    event = review["events"][-1]
    assert (event["from_status"], event["to_status"], event["actor"]) == (
        "approved",
        "lapsed",
        "system",
    )
    assert outbox(services, template="registration_effective") == []
    assert mail_to(services, reference, "lapsed_uncollected").subject == (
        f"電子健康紀錄登記 {reference} 已失效"
    )


def test_lapse_when_requested_documents_are_not_supplied_within_60_days(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    rita = officer_token(client, services, "rita", "reviewer")
    slow, _ = submitted_application(client, samples[2])  # zh-Hans
    prompt, _ = submitted_application(client, samples[1])  # supplies on day 59
    requested_at = clock.advance(hours=2)
    for reference in (slow, prompt):
        decide(client, rita, reference, "request_documents", "需要有效的实验所认可证书")
    mail = mail_to(services, slow, "documents_requested")
    assert mail.subject == f"电子健康记录登记 {slow}：须补交文件"
    assert "需要有效的实验所认可证书" in mail.body and "2027-01-28" in mail.body

    _at(clock, requested_at + dt.timedelta(days=59))
    token = relogin(client, prompt)
    base = f"/api/v1/applications/{prompt}"
    upload = client.post(
        f"{base}/documents",
        data={"kind": "other"},
        files={"file": ("extra.pdf", PDF.replace(b"Catalog", b"Extra"), "application/pdf")},
        headers=bearer(token),
    )
    assert upload.status_code == 201, upload.text
    assert client.post(f"{base}/submit", headers=bearer(token)).status_code == 200

    _at(clock, requested_at + dt.timedelta(days=60) - SECOND)
    run_jobs(services, JOB)
    assert _status(client, slow)["status"] == "documents_requested"
    _at(clock, requested_at + dt.timedelta(days=60))
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 1, lapsed (uncollected) 0"
    )
    review = _status(client, slow)
    assert review["status"] == "lapsed"
    assert review["events"][-1]["actor"] == "system"
    assert review["events"][-1]["reason"] == (
        "the documents requested on 2026-11-29 were not supplied within 60 days (by 2027-01-28)"
    )
    assert _status(client, prompt)["status"] == "submitted"
    lapsed = mail_to(services, slow, "lapsed_documents")
    assert lapsed.subject == f"电子健康记录登记 {slow} 已失效"
    assert "2027-01-28" in lapsed.body and lapsed.sent_at is not None

    # Nothing more can be supplied or submitted.
    token = relogin(client, slow)
    late = client.post(
        f"/api/v1/applications/{slow}/documents",
        data={"kind": "other"},
        files={"file": ("late.pdf", PDF.replace(b"Catalog", b"Late"), "application/pdf")},
        headers=bearer(token),
    )
    assert late.status_code == 409 and late.json()["code"] == "application_not_editable"
    submit = client.post(f"/api/v1/applications/{slow}/submit", headers=bearer(token))
    assert submit.status_code == 409 and submit.json()["code"] == "invalid_state_transition"


def test_time_rules_move_only_due_applications_in_the_database(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    """A draft, a submitted and a rejected application never move, however late."""
    rita = officer_token(client, services, "rita", "reviewer")
    submitted, _ = submitted_application(client, samples[0])
    rejected, _ = submitted_application(client, samples[1])
    decide(client, rita, rejected, "reject", "business registration expired")
    assert "business registration expired" in mail_to(services, rejected, "rejected").body
    clock.advance(days=400)
    assert (
        run_jobs(services, JOB)[JOB] == "effective 0, lapsed (documents) 0, lapsed (uncollected) 0"
    )
    with services.sessions() as session:
        statuses = dict(session.execute(select(Application.reference, Application.status)).all())
    assert statuses[submitted] is ApplicationStatus.SUBMITTED
    assert statuses[rejected] is ApplicationStatus.REJECTED

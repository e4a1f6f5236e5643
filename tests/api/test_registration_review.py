"""The reviewer queue (filters: status, provider type, age; pagination) and the
decisions, each with a reason the applicant sees and an email in their language."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from api.services import Services
from tests.conftest import START, FrozenClock
from tests.helpers import bearer, create_application, officer_token, submitted_application
from tests.registration.flow import (
    decide,
    mail_to,
)


def test_queue_filters_and_pagination(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    # Submitted on day 0 (solo practice), day 3 (medical group), day 10 (laboratory);
    # one more medical group still a draft.
    solo, _ = submitted_application(client, samples[0])
    clock.advance(days=3)
    group, _ = submitted_application(client, samples[1])
    clock.advance(days=7)
    lab, _ = submitted_application(client, samples[2])
    draft, draft_token = create_application(client, samples[1])
    client.put(
        f"/api/v1/applications/{draft}/provider",
        json=samples[1]["provider"],
        headers=bearer(draft_token),
    )
    clock.advance(days=1)  # today: day 11
    rita = officer_token(client, services, "rita", "reviewer")

    def queue(**params: Any) -> list[str]:
        response = client.get("/api/v1/officer/applications", params=params, headers=bearer(rita))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] >= len(body["items"])
        return [item["reference"] for item in body["items"]]

    assert queue(status="submitted") == [solo, group, lab]  # oldest submission first
    assert queue() == [solo, group, lab, draft]
    assert queue(provider_type="medical_group") == [group, draft]
    assert queue(provider_type="medical_group", status="submitted") == [group]
    assert queue(min_age_days=5) == [solo, group]
    assert queue(min_age_days=8) == [solo, group]
    assert queue(min_age_days=9) == [solo]
    assert queue(min_age_days=12) == []
    day3 = (START + dt.timedelta(days=3)).isoformat()
    assert queue(submitted_before=day3) == [solo, group]
    assert queue(submitted_before="2026-12-02T08:59:59Z") == [solo]
    assert queue(submitted_before=day3, min_age_days=11) == [solo]  # both must hold
    page = client.get(
        "/api/v1/officer/applications",
        params={"status": "submitted", "limit": 2, "offset": 1},
        headers=bearer(rita),
    ).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert [i["reference"] for i in page["items"]] == [group, lab]
    assert page["items"][0]["provider_type"] == "medical_group"
    assert page["items"][0]["submitted_at"] == "2026-12-02T09:00:00Z"
    assert queue(status="withdrawn") == []

    for params in (
        {"provider_type": "spa"},
        {"min_age_days": -1},
        {"submitted_before": "2026-12-01T00:00:00"},  # no offset: ambiguous
        {"submitted_before": "yesterday"},
        {"submitted_before": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC
        {"submitted_before": "9999-12-31T23:59:59-05:00"},  # after 9999 in UTC
        {"status": "pending"},
    ):
        response = client.get("/api/v1/officer/applications", params=params, headers=bearer(rita))
        assert response.status_code == 422, (params, response.text)
    security = officer_token(client, services, "sam", "security_officer")
    response = client.get("/api/v1/officer/applications", headers=bearer(security))
    assert response.status_code == 403 and response.json()["code"] == "role_not_allowed"


def test_every_decision_has_a_reason_the_applicant_sees_and_a_mail(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    rita = officer_token(client, services, "rita", "reviewer")
    cases = (
        (samples[0], "reject", "商業登記證已過期", "rejected", "未獲接納"),
        (
            samples[1],
            "request_documents",
            "Please upload the medical group's BR certificate",
            "documents_requested",
            "further documents requested",
        ),
        (samples[2], "approve", "文件已核实", "acceptance", "已获接纳"),
    )
    for sample, decision, reason, template, in_subject in cases:
        reference, token = submitted_application(client, sample)
        decided = decide(client, rita, reference, decision, reason)
        review = client.get(f"/api/v1/applications/{reference}", headers=bearer(token)).json()
        assert review["status"] == decided["status"]
        assert review["decision_reason"] == reason
        event = review["events"][-1]
        assert (event["actor"], event["reason"]) == ("rita", reason)
        mail = mail_to(services, reference, template)
        assert in_subject in mail.subject
        assert mail.recipient == sample["provider"]["email"]
        assert mail.sent_at is not None  # delivered at once (Maildir here)
        if template != "acceptance":
            assert reason in mail.body

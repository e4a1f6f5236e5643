"""``POST /api/v1/applications/{reference}/support-requests``: accepted within the 14
days after the acceptance email (frozen clock: day 13 yes, day 14 and 15 no), never
before acceptance, only from the applicant."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.services import Services
from tests.conftest import FrozenClock
from tests.helpers import (
    APPLICANT_PASSWORD,
    approved_application,
    bearer,
    login,
    officer_token,
    submitted_application,
)

REQUEST = {
    "subject": "證書安裝問題",
    "message": "The PKCS#12 file does not open on our Windows 7 reception PC.\nPlease advise.",
}


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def test_support_window_is_the_14_days_after_acceptance(
    client: TestClient, services: Services, clock: FrozenClock, samples: list[dict[str, Any]]
) -> None:
    reference, token, _codes = approved_application(client, services, samples[1])
    url = f"/api/v1/applications/{reference}/support-requests"
    first = client.post(url, json=REQUEST, headers=bearer(token))
    assert first.status_code == 201, first.text

    clock.advance(days=13)  # day 13: still open
    token = login(client, reference, APPLICANT_PASSWORD)
    day13 = client.post(url, json=REQUEST, headers=bearer(token))
    assert day13.status_code == 201, day13.text
    assert day13.json()["subject"] == "證書安裝問題"
    assert day13.json()["created_at"] == "2026-12-12T09:00:00Z"

    clock.advance(days=1)  # exactly 14 days: the registration takes effect, window closed
    token = login(client, reference, APPLICANT_PASSWORD)
    _problem(client.post(url, json=REQUEST, headers=bearer(token)), 409, "support_window_closed")

    clock.advance(days=1)  # day 15
    token = login(client, reference, APPLICANT_PASSWORD)
    body = _problem(
        client.post(url, json=REQUEST, headers=bearer(token)), 409, "support_window_closed"
    )
    assert body["window_closed_at"] == "2026-12-13T09:00:00+00:00"
    assert "within 14 days of the acceptance email" in body["detail"]

    # Reviewers see the two accepted requests, newest first.
    reviewer = officer_token(client, services, "rita", "reviewer")
    listed = client.get("/api/v1/officer/support-requests", headers=bearer(reviewer))
    assert listed.status_code == 200
    assert [(r["reference"], r["id"]) for r in listed.json()] == [
        (reference, day13.json()["id"]),
        (reference, first.json()["id"]),
    ]
    _problem(
        client.get("/api/v1/officer/support-requests", headers=bearer(token)),
        403,
        "role_not_allowed",
    )


def test_support_refusals(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    submitted, submitted_token = submitted_application(client, samples[0])
    _problem(
        client.post(
            f"/api/v1/applications/{submitted}/support-requests",
            json=REQUEST,
            headers=bearer(submitted_token),
        ),
        409,
        "support_not_available",
    )
    reference, token, _codes = approved_application(client, services, samples[2])
    url = f"/api/v1/applications/{reference}/support-requests"
    # Another applicant cannot see (or use) this application; officers do not ask.
    _problem(
        client.post(url, json=REQUEST, headers=bearer(submitted_token)),
        404,
        "application_not_found",
    )
    security = officer_token(client, services, "sam", "security_officer")
    _problem(client.post(url, json=REQUEST, headers=bearer(security)), 403, "applicant_only")
    _problem(client.post(url, json=REQUEST), 401, "not_authenticated")
    _problem(
        client.post(url, json={"subject": "", "message": "x"}, headers=bearer(token)),
        422,
        "invalid_request",
    )
    _problem(
        client.post(url, json={"subject": "a\nb", "message": "x"}, headers=bearer(token)),
        422,
        "invalid_request",
    )
    assert client.post(url, json=REQUEST, headers=bearer(token)).status_code == 201

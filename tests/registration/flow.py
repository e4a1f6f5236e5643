"""Helpers for the registration tests of issue 3: mails from the outbox table, the
periodic jobs, and applications brought to a given state through the API."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.services import Services
from api.tasks import run_tasks
from issuance.models import OutboxMail
from tests.helpers import (
    APPLICANT_PASSWORD,
    approved_application,
    bearer,
    collect_with_csr,
    login,
    make_csr,
)


def outbox(services: Services, *, template: str | None = None) -> list[OutboxMail]:
    """Rows of the mail outbox (oldest first), optionally of one template."""
    with services.sessions() as session:
        query = select(OutboxMail).order_by(OutboxMail.id)
        if template is not None:
            query = query.where(OutboxMail.template == template)
        return list(session.scalars(query))


def mail_to(services: Services, reference: str, template: str) -> OutboxMail:
    """The one ``template`` mail about ``reference``."""
    rows = [r for r in outbox(services, template=template) if reference in r.subject]
    assert len(rows) == 1, [(r.template, r.subject) for r in outbox(services)]
    return rows[0]


def run_jobs(services: Services, *names: str) -> dict[str, str]:
    """Run the named periodic jobs once (as ``ehrca tasks run --only ...``), then
    deliver mail; returns ``{job: summary}``."""
    return dict(run_tasks(services, {*names, "mail.deliver"}))


def code_in(body: str) -> str:
    """The download code in a ``location_added`` mail body."""
    match = re.search(r"(?:Download code|下載碼|下载码)：?:? *([0-9A-Z-]{24})", body)
    assert match is not None, body
    return match.group(1)


def decide(
    client: TestClient, token: str, reference: str, decision: str, reason: str
) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/officer/applications/{reference}/decision",
        json={"decision": decision, "reason": reason},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def relogin(client: TestClient, reference: str) -> str:
    """A fresh applicant token (tokens last 8 hours; the tests move the clock by days)."""
    return login(client, reference, APPLICANT_PASSWORD)


def collected_application(
    client: TestClient, services: Services, sample: dict[str, Any], *, number: int = 1
) -> tuple[str, str, dict[int, str], dict[str, Any]]:
    """Approve ``sample`` and collect the certificate of location ``number`` with a CSR;
    returns ``(reference, token, codes, collected body)``."""
    reference, token, codes = approved_application(client, services, sample)
    _key, csr = make_csr()
    body = collect_with_csr(client, reference, token, number, codes[number], csr)
    return reference, token, codes, body

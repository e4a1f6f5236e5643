"""Failed logins in the audit trail (registration.accounts): the typed username is
recorded only when it has a username's shape, so a password typed into the username
field is never stored."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.services import Services
from ca.audit import AuditEvent, verify_chain
from registration.accounts import username_for_audit

SECRET = "my secret password!!"


def _failed_logins(services: Services) -> list[tuple[str, str | None, str | None]]:
    with services.sessions() as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event_type == "auth.login_failed")
            .order_by(AuditEvent.seq)
        ).all()
        assert verify_chain(session).ok
        return [(r.actor, r.subject, r.details) for r in rows]


def _fail(client: TestClient, username: str) -> None:
    response = client.post(
        "/api/v1/auth/token", data={"username": username, "password": "wrong password 1"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_credentials"


def test_a_password_typed_as_username_is_not_recorded(
    client: TestClient, services: Services
) -> None:
    _fail(client, SECRET)
    ((actor, subject, _details),) = _failed_logins(services)
    assert (actor, subject) == ("<malformed>", None)
    with services.sessions() as session:
        row = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "auth.login_failed")
        ).one()
        stored = json.dumps(
            [row.actor, row.subject, row.details, row.event_type], ensure_ascii=False
        )
    for part in (SECRET, *SECRET.split(), "secret", "password!!"):
        assert part not in stored


def test_failed_logins_with_a_username_shape_name_it(
    client: TestClient, services: Services
) -> None:
    for username in ("HCP-7K3Q9M2T", "rita", "Chan.Tai.Man@Clinic.example.hk", "Rita", "a@b"):
        _fail(client, username)
    assert [(a, s) for a, s, _ in _failed_logins(services)] == [
        ("HCP-7K3Q9M2T", "HCP-7K3Q9M2T"),
        ("rita", "rita"),
        ("Chan.Tai.Man@Clinic.example.hk", "Chan.Tai.Man@Clinic.example.hk"),
        ("<malformed>", None),  # officer names are lowercase
        ("<malformed>", None),  # no domain with a dot
    ]


@pytest.mark.parametrize(
    ("username", "recorded"),
    [
        ("HCP-7K3Q9M2T", "HCP-7K3Q9M2T"),
        ("HCP-7k3q9m2t", None),
        ("HCP-7K3Q9M2", None),
        ("rita", "rita"),
        ("security.officer-2", "security.officer-2"),
        ("r", None),
        ("x" * 65, None),
        ("staff@clinic.example.hk", "staff@clinic.example.hk"),
        ("陳大文@診所.香港", "陳大文@診所.香港"),
        ("p@ss", None),
        ("my secret@password.hk", None),
        ("a" * 250 + "@example.hk", None),
        (SECRET, None),
        ("Tr0ub4dor&3", None),
        ("", None),
        ("rita\n", None),
    ],
)
def test_username_for_audit(username: str, recorded: str | None) -> None:
    assert username_for_audit(username) == recorded

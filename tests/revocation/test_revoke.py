"""Revoking: the officer and applicant routes (one use case each call), exact answers
for 404 and 409, the reason policy per role, invalidity dates, and bulk revocation
of a provider or a service location in one transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.services import Services
from ca.audit import AuditEvent
from ca.blocklist import BlockedKey
from ca.models import CertificateRecord, CertificateStatus
from revocation.crl_der import encode_crl_entry
from revocation.errors import InvalidRevocationRequest, ReasonNotAllowed
from revocation.models import Revocation
from revocation.service import (
    revoke_location_certificates,
    revoke_provider_certificates,
)
from tests.conftest import START, FrozenClock
from tests.helpers import bearer, create_application, officer_token
from tests.revocation.support import issue_client

R = x509.ReasonFlags


def _officer_revoke(
    client: TestClient, token: str, serial: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    response = client.post(
        f"/api/v1/officer/certificates/{serial}/revoke", json=body, headers=bearer(token)
    )
    return response.status_code, response.json()


def _crl_serials(client: TestClient) -> list[int]:
    crl = x509.load_der_x509_crl(client.get("/pki/crl/ehrca-issuing-1.crl").content)
    return [r.serial_number for r in crl]


def test_officer_revocation_answer_crl_status_and_audit(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    token = officer_token(client, services, "sam", "security_officer")
    issued = issue_client(services)
    clock.advance(minutes=10)
    status, body = _officer_revoke(
        client,
        token,
        issued.serial_hex.upper(),  # any case is accepted
        {"reason": "keyCompromise", "invalidity_date": "2026-11-29T16:30:00+08:00"},
    )
    assert status == 200
    assert body == {
        "serial_number": issued.serial_hex,
        "revocation_date": "2026-11-29T09:10:00Z",
        "revocation_reason": "keyCompromise",
        "invalidity_date": "2026-11-29T08:30:00Z",
        "crl_number": 2,
    }
    assert _crl_serials(client) == [issued.certificate.serial_number]
    assert services.revocation_status.is_revoked(issued.record.issuer_id, issued.serial_hex)
    with services.sessions() as session:
        record = session.get_one(CertificateRecord, issued.record.id)
        assert record.status is CertificateStatus.REVOKED
        # keyCompromise puts the key on the block list.
        assert session.scalar(select(func.count()).select_from(BlockedKey)) == 1
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "certificate.revoked")
        ).one()
        assert (event.actor, event.subject) == ("sam", issued.serial_hex)
        assert event.details == (
            '{"invalidity_date":"2026-11-29T08:30:00+00:00","reason":"keyCompromise",'
            '"role":"security_officer","scope":"certificate"}'
        )


def test_unknown_serial_is_404_and_second_revocation_is_409_with_the_first(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    token = officer_token(client, services, "sam", "security_officer")
    for serial in ("00" * 20, "12345", "not-hex", "f" * 41, "%00"):
        status, body = _officer_revoke(client, token, serial, {"reason": "superseded"})
        assert (status, body["code"]) == (404, "certificate_not_found")
    issued = issue_client(services)
    assert _officer_revoke(client, token, issued.serial_hex, {"reason": "superseded"})[0] == 200
    clock.advance(hours=1)
    status, body = _officer_revoke(client, token, issued.serial_hex, {"reason": "keyCompromise"})
    assert status == 409
    assert body["code"] == "certificate_already_revoked"
    assert {k: body[k] for k in ("serial_number", "revocation_date", "revocation_reason")} == {
        "serial_number": issued.serial_hex,
        "revocation_date": "2026-11-29T09:00:00+00:00",
        "revocation_reason": "superseded",
    }
    assert body["invalidity_date"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"reason": "removeFromCRL"}, 403, "revocation_reason_not_allowed"),
        ({"reason": "lostKey"}, 422, "invalid_revocation_request"),
        (
            {"reason": "keyCompromise", "invalidity_date": "2026-11-29T10:00:00Z"},
            422,
            "invalid_revocation_request",
        ),
        (
            {"reason": "keyCompromise", "invalidity_date": "2026-11-29T08:00:00"},
            422,
            "invalid_revocation_request",
        ),
        ({"reason": "keyCompromise", "invalidity_date": "yesterday"}, 422, "invalid_request"),
        ({"reason": "x" * 33}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
    ],
    ids=["removeFromCRL", "unknown", "future", "naive", "garbage-date", "long", "missing"],
)
def test_officer_refusals(
    client: TestClient, services: Services, body: dict[str, Any], status: int, code: str
) -> None:
    token = officer_token(client, services, "sam", "security_officer")
    issued = issue_client(services)
    got_status, got = _officer_revoke(client, token, issued.serial_hex, body)
    assert (got_status, got["code"]) == (status, code)
    assert _crl_serials(client) == []


@pytest.mark.parametrize("role", ["reviewer", "admin"])
def test_other_officers_may_not_revoke(client: TestClient, services: Services, role: str) -> None:
    token = officer_token(client, services, f"x-{role}", role)
    issued = issue_client(services)
    status, body = _officer_revoke(client, token, issued.serial_hex, {"reason": "superseded"})
    assert (status, body["code"]) == (403, "role_not_allowed")


def test_applicant_self_revocation(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token = create_application(client, samples[0])
    other_reference, other_token = create_application(client, samples[1])
    own = issue_client(services, reference=reference, number=1)
    second = issue_client(services, reference=reference, number=2)
    foreign = issue_client(services, reference=other_reference)
    url = f"/api/v1/applications/{reference}/certificates"

    # Only keyCompromise and superseded.
    refused = client.post(
        f"{url}/{own.serial_hex}/revoke",
        json={"reason": "cessationOfOperation"},
        headers=bearer(token),
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "revocation_reason_not_allowed"
    assert "allowed: keyCompromise, superseded" in refused.json()["detail"]
    # Another provider's serial is reported like an unknown one.
    probe = client.post(
        f"{url}/{foreign.serial_hex}/revoke", json={"reason": "superseded"}, headers=bearer(token)
    )
    assert (probe.status_code, probe.json()["code"]) == (404, "certificate_not_found")
    # Another applicant cannot use this reference.
    wrong = client.post(
        f"{url}/{own.serial_hex}/revoke", json={"reason": "superseded"}, headers=bearer(other_token)
    )
    assert (wrong.status_code, wrong.json()["code"]) == (404, "application_not_found")
    # Officers use their own route.
    officer = officer_token(client, services, "sam", "security_officer")
    as_officer = client.post(
        f"{url}/{own.serial_hex}/revoke", json={"reason": "superseded"}, headers=bearer(officer)
    )
    assert (as_officer.status_code, as_officer.json()["code"]) == (403, "applicant_only")
    assert (
        client.post(f"{url}/{own.serial_hex}/revoke", json={"reason": "superseded"}).status_code
        == 401
    )

    clock.advance(minutes=1)
    done = client.post(
        f"{url}/{own.serial_hex}/revoke",
        json={"reason": "keyCompromise", "invalidity_date": "2026-11-29T08:00:00Z"},
        headers=bearer(token),
    )
    assert done.status_code == 200
    assert done.json() == {
        "serial_number": own.serial_hex,
        "revocation_date": "2026-11-29T09:01:00Z",
        "revocation_reason": "keyCompromise",
        "invalidity_date": "2026-11-29T08:00:00Z",
        "crl_number": 2,
    }
    superseded = client.post(
        f"{url}/{second.serial_hex}/revoke", json={"reason": "superseded"}, headers=bearer(token)
    )
    assert superseded.json()["crl_number"] == 3
    again = client.post(
        f"{url}/{own.serial_hex}/revoke", json={"reason": "superseded"}, headers=bearer(token)
    )
    assert again.status_code == 409
    assert again.json()["revocation_reason"] == "keyCompromise"
    assert sorted(_crl_serials(client)) == sorted(
        [own.certificate.serial_number, second.certificate.serial_number]
    )
    with services.sessions() as session:
        actors = session.scalars(select(Revocation.revoked_by).order_by(Revocation.id)).all()
    assert list(actors) == [reference, reference]


# ----------------------------------------------------------------------------- bulk


def test_revoke_provider_certificates_in_one_transaction(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    provider = [
        issue_client(services, reference="HCP-BULK0001", location_id=n, number=n)
        for n in (11, 12, 13)
    ]
    bystander = issue_client(services, reference="HCP-OTHER001", location_id=21)
    # One already revoked: skipped and reported.
    with services.sessions() as session:
        first = revoke_location_certificates(
            session,
            "HCP-BULK0001",
            13,
            R.superseded,
            actor="sam",
            now=clock(),
            context=services.revocation,
        )
    assert first.serial_numbers == (provider[2].serial_hex,)
    assert first.publication.crl_number(provider[2].record.issuer_id) == 2
    clock.advance(minutes=5)
    with services.sessions() as session:
        result = revoke_provider_certificates(
            session,
            "HCP-BULK0001",
            R.cessation_of_operation,
            actor="system (withdrawal)",
            now=clock(),
            context=services.revocation,
        )
    assert result.serial_numbers == (provider[0].serial_hex, provider[1].serial_hex)
    assert result.already_revoked == (provider[2].serial_hex,)
    # One CRL re-signed for both, listing all three; the bystander untouched.
    assert [(r.crl_number, r.shard) for r in result.publication.crls] == [(3, None)]
    assert sorted(_crl_serials(client)) == sorted(p.certificate.serial_number for p in provider)
    assert all(
        services.revocation_status.is_revoked(p.record.issuer_id, p.serial_hex) for p in provider
    )
    assert not services.revocation_status.is_revoked(
        bystander.record.issuer_id, bystander.serial_hex
    )
    with services.sessions() as session:
        rows = session.scalars(select(Revocation).order_by(Revocation.id)).all()
        assert [(r.serial_number, r.revocation_reason, r.revocation_date) for r in rows] == [
            (provider[2].serial_hex, "superseded", START),
            (provider[0].serial_hex, "cessationOfOperation", START + dt.timedelta(minutes=5)),
            (provider[1].serial_hex, "cessationOfOperation", START + dt.timedelta(minutes=5)),
        ]
        scopes = session.scalars(
            select(AuditEvent.details)
            .where(AuditEvent.event_type == "certificate.revoked")
            .order_by(AuditEvent.seq)
        ).all()
        assert ['"scope":"service_location"' in scopes[0]] + [
            '"scope":"provider"' in s for s in scopes[1:]
        ] == [True, True, True]


def test_bulk_revocation_is_all_or_nothing(services: Services, clock: FrozenClock) -> None:
    """A failure while staging (here: the second certificate's revocation row clashes)
    rolls every revocation of the call back, and the caller's staged work with it."""
    a = issue_client(services, reference="HCP-BULK0002", location_id=31)
    b = issue_client(services, reference="HCP-BULK0002", location_id=32)
    with services.sessions() as session:
        # Simulate a revocation row that exists while the status still says issued
        # (e.g. written by another worker): the unique certificate_id clashes.
        session.add(
            Revocation(
                certificate_id=b.record.id,
                issuer_id=b.record.issuer_id,
                serial_number=b.serial_hex,
                revocation_date=clock(),
                revocation_reason="superseded",
                revoked_by="elsewhere",
                not_valid_after=b.record.not_valid_after,
                entry_der=encode_crl_entry(int(b.serial_hex, 16), clock(), R.superseded),
            )
        )
        session.commit()
    with services.sessions() as session, pytest.raises(IntegrityError):
        revoke_provider_certificates(
            session, "HCP-BULK0002", R.cessation_of_operation, actor="sam", now=clock()
        )
    with services.sessions() as session:
        assert session.get_one(CertificateRecord, a.record.id).status is CertificateStatus.ISSUED
        assert session.scalar(select(func.count()).select_from(Revocation)) == 1


def test_bulk_revocation_staged_for_the_caller_to_commit(
    services: Services, clock: FrozenClock
) -> None:
    a = issue_client(services, reference="HCP-BULK0003", location_id=41)
    with services.sessions() as session:
        result = revoke_location_certificates(
            session,
            "HCP-BULK0003",
            41,
            R.affiliation_changed,
            actor="sam",
            now=clock(),
            commit=False,
        )
        assert result.serial_numbers == (a.serial_hex,)
        session.rollback()  # the caller changes its mind: nothing happened
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Revocation)) == 0
        result = revoke_location_certificates(
            session,
            "HCP-BULK0003",
            41,
            R.affiliation_changed,
            actor="sam",
            now=clock(),
            commit=False,
        )
        session.commit()
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Revocation)) == 1
    # A location of another provider matches nothing; no certificates is no error.
    with services.sessions() as session:
        none = revoke_location_certificates(
            session, "HCP-NOBODY01", 41, R.superseded, actor="sam", now=clock()
        )
    assert none.serial_numbers == () and none.already_revoked == ()


def test_bulk_revocation_checks_reason_and_date_first(
    services: Services, clock: FrozenClock
) -> None:
    issue_client(services, reference="HCP-BULK0004")
    with services.sessions() as session:
        with pytest.raises(ReasonNotAllowed):
            revoke_provider_certificates(
                session,
                "HCP-BULK0004",
                R.cessation_of_operation,
                actor="x",
                now=clock(),
                actor_role="applicant",
            )
        with pytest.raises(InvalidRevocationRequest, match="future"):
            revoke_provider_certificates(
                session,
                "HCP-BULK0004",
                R.key_compromise,
                actor="x",
                now=clock(),
                invalidity_date=clock() + dt.timedelta(seconds=1),
            )
        assert session.scalar(select(func.count()).select_from(Revocation)) == 0

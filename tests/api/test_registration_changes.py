"""Changes after registration: add a service location (a change request a reviewer
decides; the new location gets a download code by email and its own certificate),
remove one (its certificates revoked with cessationOfOperation), withdraw the whole
registration (every certificate revoked), and the sweep that revokes what a failed
step left valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

import api.changes
from api.services import Services
from ca.models import CARole
from ca.service import get_authority
from issuance.service import collect_with_csr as collect_with_csr_directly
from registration.accounts import Principal
from registration.service import approved_location, get_application
from revocation.service import latest_crl
from tests.helpers import (
    bearer,
    collect_with_csr,
    create_application,
    make_csr,
    officer_token,
    openssl_verify,
)
from tests.registration.flow import (
    code_in,
    collected_application,
    mail_to,
    run_jobs,
)

NEW_LOCATION = {
    "name_en": "Yuen Long Clinic",
    "name_zh": "元朗𨋢口診所",
    "address": "G/F, 8 Castle Peak Road, Yuen Long, New Territories",
    "district": "Yuen Long",
    "phone": "24761234",
    "opening_status": "opening_soon",
}


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _crl_reasons(services: Services) -> dict[str, x509.ReasonFlags | None]:
    """``{serial hex: reason}`` of the issuing CA's newest CRL."""
    with services.sessions() as session:
        issuing = get_authority(session, CARole.ISSUING)
        row = latest_crl(session, issuing.id)
        assert row is not None
        crl = x509.load_der_x509_crl(row.crl_der)
    reasons: dict[str, x509.ReasonFlags | None] = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        reasons[f"{entry.serial_number:040x}"] = reason
    return reasons


def test_add_a_service_location_reviewed_like_an_application(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, _codes, _first = collected_application(client, services, samples[1])
    base = f"/api/v1/applications/{reference}"
    url = f"{base}/change-requests"

    def ask(location: dict[str, Any], reason: str | None = None) -> Any:
        body = {"kind": "add_service_location", "service_location": location, "reason": reason}
        return client.post(url, json=body, headers=bearer(token))

    _problem(ask({**NEW_LOCATION, "district": "Mars"}), 422, "invalid_request")
    _problem(ask({**NEW_LOCATION, "phone": "1234"}), 422, "invalid_request")
    created = ask(NEW_LOCATION, "a fourth clinic opens in March")
    assert created.status_code == 201, created.text
    change = created.json()
    assert change["status"] == "pending" and change["service_location_id"] is None
    assert change["requested_by"] == reference
    assert change["service_location"]["name_zh"] == "元朗𨋢口診所"
    second = ask(
        {**NEW_LOCATION, "name_en": "Tai Po Clinic", "name_zh": "大埔診所", "district": "Tai Po"}
    ).json()

    # Only reviewers decide; reviewers and admins see the queue.
    security = officer_token(client, services, "sam", "security_officer")
    queue_url = "/api/v1/officer/change-requests"
    _problem(client.get(queue_url, headers=bearer(security)), 403, "role_not_allowed")
    rita = officer_token(client, services, "rita", "reviewer")
    queue = client.get(f"{queue_url}?status=pending", headers=bearer(rita)).json()
    assert queue["total"] == 2 and [c["id"] for c in queue["items"]] == [change["id"], second["id"]]
    decision_url = f"{queue_url}/{change['id']}/decision"
    approve = {"decision": "approve", "reason": "premises licence verified"}
    _problem(
        client.post(decision_url, json=approve, headers=bearer(token)), 403, "role_not_allowed"
    )
    _problem(
        client.post(
            decision_url, json={"decision": "approve", "reason": " "}, headers=bearer(rita)
        ),
        422,
        "invalid_request",
    )
    decided = client.post(decision_url, json=approve, headers=bearer(rita))
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    assert decided.json()["service_location_id"] == 4
    assert decided.json()["decided_by"] == "rita"
    _problem(
        client.post(decision_url, json=approve, headers=bearer(rita)), 409, "change_request_decided"
    )

    # The new location is in the registration; its download code comes by email.
    review = client.get(base, headers=bearer(token)).json()
    assert [(s["id"], s["name_en"]) for s in review["service_locations"]][-1] == (
        4,
        "Yuen Long Clinic",
    )
    mail = mail_to(services, reference, "location_added")
    assert mail.subject == f"eHR registration {reference}: service location 4 added"
    assert "premises licence verified" in mail.body and mail.sent_at is not None
    body = collect_with_csr(client, reference, token, 4, code_in(mail.body), make_csr()[1])
    certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    assert [
        a.value
        for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ] == ["Yuen Long Clinic", "元朗𨋢口診所"]
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        f"{reference}-L4"
    )
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"https://id.ehrca.example/hcp/{reference}/sl/4"
    ]

    # Rejection: a reason by mail, no location.
    rejected = client.post(
        f"{queue_url}/{second['id']}/decision",
        json={"decision": "reject", "reason": "no premises licence for Tai Po"},
        headers=bearer(rita),
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert "no premises licence for Tai Po" in mail_to(services, reference, "change_rejected").body
    history = client.get(url, headers=bearer(token)).json()
    assert [(c["kind"], c["status"]) for c in history["items"]] == [
        ("add_service_location", "approved"),
        ("add_service_location", "rejected"),
    ]
    assert len(client.get(base, headers=bearer(token)).json()["service_locations"]) == 4

    # Only a registered provider may ask; unknown and other applicants' requests are 404.
    draft, draft_token = create_application(client, samples[0])
    refused = client.post(
        f"/api/v1/applications/{draft}/change-requests",
        json={"kind": "add_service_location", "service_location": NEW_LOCATION},
        headers=bearer(draft_token),
    )
    _problem(refused, 409, "registration_not_active")
    _problem(
        client.get(f"{queue_url}/999999", headers=bearer(rita)), 404, "change_request_not_found"
    )
    _problem(client.get(url, headers=bearer(draft_token)), 404, "application_not_found")


def test_remove_a_service_location_revokes_its_certificates(
    client: TestClient, services: Services, samples: list[dict[str, Any]], tmp_path: Path
) -> None:
    reference, token, codes, second = collected_application(client, services, samples[1], number=2)
    first = collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
    base = f"/api/v1/applications/{reference}"

    _problem(
        client.post(f"{base}/service-locations/2/remove", json={}, headers=bearer(token)),
        422,
        "invalid_request",
    )
    removed = client.post(
        f"{base}/service-locations/2/remove",
        json={"reason": "the Sham Shui Po clinic closed"},
        headers=bearer(token),
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["revoked_serial_numbers"] == [second["serial_number"]]

    reasons = _crl_reasons(services)
    assert reasons[second["serial_number"]] is x509.ReasonFlags.cessation_of_operation
    assert first["serial_number"] not in reasons
    check = openssl_verify(services, tmp_path, second["certificate_pem"])
    assert check.returncode != 0 and "certificate revoked" in check.stdout + check.stderr
    assert openssl_verify(services, tmp_path, first["certificate_pem"]).returncode == 0

    # Its download codes stop working; the other locations are unaffected.
    _problem(
        client.post(
            f"{base}/service-locations/2/certificate",
            json={"download_code": codes[3], "csr": make_csr()[1]},
            headers=bearer(token),
        ),
        410,
        "service_location_removed",
    )
    collect_with_csr(client, reference, token, 3, codes[3], make_csr()[1])
    _problem(
        client.post(
            f"{base}/service-locations/2/remove", json={"reason": "again"}, headers=bearer(token)
        ),
        410,
        "service_location_removed",
    )
    _problem(
        client.post(
            f"{base}/service-locations/9/remove", json={"reason": "x"}, headers=bearer(token)
        ),
        404,
        "service_location_not_found",
    )

    review = client.get(base, headers=bearer(token)).json()
    assert [s["removed_at"] is not None for s in review["service_locations"]] == [
        False,
        True,
        False,
    ]
    mail = mail_to(services, reference, "location_removed")
    assert "the Sham Shui Po clinic closed" in mail.body
    assert "Sham Shui Po Clinic" in mail.body

    # The last location cannot be removed: withdraw instead.
    assert (
        client.post(
            f"{base}/service-locations/1/remove", json={"reason": "moved"}, headers=bearer(token)
        ).status_code
        == 200
    )
    _problem(
        client.post(
            f"{base}/service-locations/3/remove", json={"reason": "closing"}, headers=bearer(token)
        ),
        409,
        "last_service_location",
    )
    history = client.get(f"{base}/change-requests", headers=bearer(token)).json()["items"]
    assert [(c["kind"], c["status"], c["service_location_id"], c["reason"]) for c in history] == [
        ("remove_service_location", "done", 2, "the Sham Shui Po clinic closed"),
        ("remove_service_location", "done", 1, "moved"),
    ]


def test_withdraw_revokes_every_certificate(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes, first = collected_application(client, services, samples[1])
    second = collect_with_csr(client, reference, token, 2, codes[2], make_csr()[1])
    base = f"/api/v1/applications/{reference}"
    pending = client.post(
        f"{base}/change-requests",
        json={"kind": "add_service_location", "service_location": NEW_LOCATION},
        headers=bearer(token),
    ).json()
    draft, draft_token = create_application(client, samples[0])
    _problem(
        client.post(
            f"/api/v1/applications/{draft}/withdraw",
            json={"reason": "x"},
            headers=bearer(draft_token),
        ),
        409,
        "invalid_state_transition",
    )
    _problem(
        client.post(f"{base}/withdraw", json={"reason": ""}, headers=bearer(token)),
        422,
        "invalid_request",
    )
    rita = officer_token(client, services, "rita", "reviewer")
    _problem(
        client.post(f"{base}/withdraw", json={"reason": "x"}, headers=bearer(rita)),
        403,
        "applicant_only",
    )

    withdrawn = client.post(
        f"{base}/withdraw", json={"reason": "the group stops its practice"}, headers=bearer(token)
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"
    serials = [first["serial_number"], second["serial_number"]]
    assert withdrawn.json()["revoked_serial_numbers"] == serials
    reasons = _crl_reasons(services)
    assert all(reasons[s] is x509.ReasonFlags.cessation_of_operation for s in serials)
    with services.sessions() as session:
        issuing = get_authority(session, CARole.ISSUING)
    assert all(services.revocation_status.is_revoked(issuing.id, s) for s in serials)

    review = client.get(base, headers=bearer(token)).json()
    assert review["events"][-1]["to_status"] == "withdrawn"
    assert review["events"][-1]["actor"] == reference
    assert review["events"][-1]["reason"] == "the group stops its practice"
    _problem(
        client.post(
            f"{base}/service-locations/3/certificate",
            json={"download_code": codes[3], "csr": make_csr()[1]},
            headers=bearer(token),
        ),
        410,
        "application_withdrawn",
    )
    _problem(
        client.post(f"{base}/withdraw", json={"reason": "again"}, headers=bearer(token)),
        409,
        "invalid_state_transition",
    )
    history = client.get(f"{base}/change-requests", headers=bearer(token)).json()["items"]
    closed = next(c for c in history if c["id"] == pending["id"])
    assert (closed["status"], closed["decided_by"]) == ("rejected", "system")
    mail = mail_to(services, reference, "registration_withdrawn")
    assert mail.subject == f"eHR registration {reference} withdrawn"
    assert "the group stops its practice" in mail.body


def test_removal_is_all_or_nothing_and_late_certificates_are_swept(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, token, codes, first = collected_application(client, services, samples[1])
    base = f"/api/v1/applications/{reference}"

    # The revocation fails: the removal is not committed either.
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("database connection lost")

    with monkeypatch.context() as patch:
        patch.setattr(api.changes, "revoke_location_certificates", broken)
        failed = client.post(
            f"{base}/service-locations/1/remove", json={"reason": "closed"}, headers=bearer(token)
        )
    assert failed.status_code == 500
    review = client.get(base, headers=bearer(token)).json()
    assert review["service_locations"][0]["removed_at"] is None
    assert client.get(f"{base}/change-requests", headers=bearer(token)).json()["total"] == 0
    assert first["serial_number"] not in _crl_reasons(services)

    # A collection of location 2 in flight while the removal commits: the certificate is
    # issued after the removal, and the periodic job revokes it.
    with services.sessions() as session:
        application = get_application(session, reference, Principal("applicant", reference, "x"))
        in_flight = approved_location(application, 2)
    removed = client.post(
        f"{base}/service-locations/2/remove", json={"reason": "closed"}, headers=bearer(token)
    )
    assert removed.status_code == 200 and removed.json()["revoked_serial_numbers"] == []
    with services.sessions() as session:
        late = collect_with_csr_directly(
            session,
            services.issuance,
            in_flight,
            download_code=codes[2],
            csr=make_csr()[1].encode(),
            now=services.clock(),
        )
        serial = late.record.serial_number
    assert serial not in _crl_reasons(services)
    job = "registration.revoke_ceased"
    assert run_jobs(services, job)[job] == "revoked 1, failed 0"
    assert _crl_reasons(services)[serial] is x509.ReasonFlags.cessation_of_operation
    with services.sessions() as session:
        issuing = get_authority(session, CARole.ISSUING)
    assert services.revocation_status.is_revoked(issuing.id, serial)
    assert run_jobs(services, job)[job] == "revoked 0, failed 0"

"""Group commit (``issuance.batch``) and the fast collection path (``api.collector``).

- One batch with a good collection, a second use of its code, an idempotency key taken
  by an earlier item and a fourth good one: each item gets its own outcome, the losers
  leave no row and keep their codes, the winners are issued with their codes linked,
  and the audit chain verifies.
- ``ca.audit.record_events`` writes the same rows and hashes as ``record_event`` one
  by one.
- The fast path answers the ordinary path's errors, in its order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from api.services import Services
from ca.audit import AuditEvent, PendingEvent, record_event, record_events, verify_chain
from ca.models import CertificateAuthority, CertificateRecord, CertificateStatus
from ca.profiles import client_subject
from ca.service import (
    IdempotencyKeyTaken,
    PreparedCertificate,
    Signer,
    load_signer,
    prepare_certificate,
)
from issuance.batch import (
    PendingCollection,
    StoredCertificate,
    lock_order,
    reserve_sign_store,
)
from issuance.codes import hash_download_code
from issuance.errors import DownloadCodeUsed
from issuance.models import DownloadCode
from issuance.service import CLIENT_PROFILE, ApprovedLocation
from registration import service as registration
from registration.accounts import Principal
from registration.models import ApplicationStatus
from tests.helpers import approved_application, bearer, make_csr, officer_token


def _pending(
    services: Services,
    location: ApprovedLocation,
    code: str,
    scoped_key: str | None,
) -> PendingCollection:
    now = services.clock()
    with services.sessions() as session:
        signer = load_signer(session, services.keystore)
    key, _ = make_csr()
    prepared = prepare_certificate(
        signer,
        services.issuance.profiles[CLIENT_PROFILE],
        subject=client_subject(
            provider_name_en=location.provider_name_en,
            provider_name_zh=location.provider_name_zh,
            location_name_en=location.location_name_en,
            location_name_zh=location.location_name_zh,
            location_identifier=location.identifier,
        ),
        public_key=key.public_key(),
        now=now,
        config=services.issuance.config,
        subject_alt_names=(location.uri(services.issuance.config.identity_base_uri),),
    )
    assert isinstance(prepared, PreparedCertificate)
    return PendingCollection(location, code, scoped_key, prepared, now)


def test_one_batch_with_winners_and_losers(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, _token, codes = approved_application(client, services, samples[1])
    assert sorted(codes) == [1, 2, 3]
    with services.sessions() as session:
        application = registration.get_application(
            session, reference, Principal("applicant", reference, "applicant")
        )
        locations = {n: registration.approved_location(application, n) for n in (1, 2, 3)}
        signer = load_signer(session, services.keystore)
    items = [
        _pending(services, locations[1], codes[1], None),
        _pending(services, locations[1], codes[1], None),  # the same code again
        _pending(services, locations[2], codes[2], "k"),
        _pending(services, locations[3], codes[3], "k"),  # the same idempotency key
    ]
    with services.sessions() as session:
        results = reserve_sign_store(session, signer, items)
    # Within a batch the items go in (idempotency key, code hash) order
    # (issuance.batch.lock_order): of the two with key "k", the one whose code has the
    # smaller SHA-256 reserves first and wins.
    win, lose = (2, 3) if hash_download_code(codes[2]) < hash_download_code(codes[3]) else (3, 2)
    kinds = [type(r) for r in results]
    assert kinds[:2] == [StoredCertificate, DownloadCodeUsed]
    assert (kinds[win], kinds[lose]) == (StoredCertificate, IdempotencyKeyTaken)
    first, third = results[0], results[win]
    assert isinstance(first, StoredCertificate) and isinstance(third, StoredCertificate)
    assert first.supersedes == () and third.supersedes == ()
    with services.sessions() as session:
        rows = session.scalars(
            select(CertificateRecord)
            .where(CertificateRecord.provider_reference == reference)
            .order_by(CertificateRecord.id)
        ).all()
        assert [(r.id, r.serial_number, r.status, r.idempotency_key) for r in rows] == [
            (first.record_id, first.serial_number, CertificateStatus.ISSUED, None),
            (third.record_id, third.serial_number, CertificateStatus.ISSUED, "k"),
        ][:: 1 if first.record_id < third.record_id else -1]
        by_id = {r.id: r for r in rows}
        assert by_id[first.record_id].certificate_der == first.certificate.public_bytes(_der())
        assert by_id[third.record_id].certificate_der == third.certificate.public_bytes(_der())
        assert by_id[first.record_id].issued_at == items[0].now
        code_rows = {
            n: session.scalars(
                select(DownloadCode).where(DownloadCode.code_sha256 == hash_download_code(c))
            ).one()
            for n, c in codes.items()
        }
        assert {n: (r.used_at is not None, r.certificate_id) for n, r in code_rows.items()} == {
            1: (True, first.record_id),
            win: (True, third.record_id),
            lose: (False, None),  # given back: its item lost the idempotency key
        }
        issued = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event_type == "certificate.issued")
            .order_by(AuditEvent.seq)
        ).all()
        assert [(e.actor, e.subject) for e in issued] == [
            (reference, first.serial_number),
            (reference, third.serial_number),
        ]
        assert issued[1].seq == issued[0].seq + 1
        assert issued[1].prev_hash == issued[0].row_hash
        report = verify_chain(session)
        assert (report.ok, report.first_bad_seq, report.problem) == (True, None, None)


def test_a_batch_costs_the_same_statements_for_one_or_two(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    """Group commit runs O(1) statements per batch: a batch of two collections that all
    succeed sends the statements a batch of one does (claim, insert, link; store and
    the audit chain's three), one driver call each."""
    reference, _token, codes = approved_application(client, services, samples[1])
    with services.sessions() as session:
        application = registration.get_application(
            session, reference, Principal("applicant", reference, "applicant")
        )
        locations = {n: registration.approved_location(application, n) for n in (1, 2, 3)}
        signer = load_signer(session, services.keystore)
    batches = [
        [_pending(services, locations[n], codes[n], f"key-{n}") for n in numbers]
        for numbers in ([1], [2, 3])
    ]
    sent: list[list[tuple[str, bool]]] = []

    def count(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool
    ) -> None:
        sent[-1].append((" ".join(statement.split()[:3]), many))

    event.listen(services.engine, "before_cursor_execute", count)
    try:
        for items in batches:
            sent.append([])
            with services.sessions() as session:
                results = reserve_sign_store(session, signer, items)
            assert [type(r) for r in results] == [StoredCertificate] * len(items)
    finally:
        event.remove(services.engine, "before_cursor_execute", count)
    statements = [
        "UPDATE download_codes SET",  # claim every code
        "INSERT INTO certificates",  # the reserved rows (insertmanyvalues: one batch)
        "UPDATE download_codes SET",  # link the codes to their rows
        "UPDATE certificates SET",  # store the signed certificates
        "UPDATE audit_head SET",  # the chain: advance seq,
        "INSERT INTO audit_events",  # append the events,
        "UPDATE audit_head SET",  # set the head's hash
    ]
    assert sent[0] == [(text, False) for text in statements]
    # One driver call each; those with a row per collection are executemany calls.
    many = [False, True, True, True, False, True, False]
    assert sent[1] == list(zip(statements, many, strict=True))


def test_lock_order_is_by_normalised_code_hash() -> None:
    """A code typed with dashes, spaces or in lower case sorts where the code does
    (``issuance.batch.lock_order``): by (scoped idempotency key, code SHA-256)."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    codes = ["7K3Q-9M2T-AAAA-BBBB-CCCC", "-0000-1111-2222-3333-4444", "zzzz zzzz zzzz zzzz zzzz"]
    items = [
        PendingCollection(cast(Any, None), code, key, cast(Any, None), now)
        for code, key in ((codes[0], None), (codes[1], None), (codes[2], None), (codes[1], "k"))
    ]
    by_hash = sorted(range(3), key=lambda i: hash_download_code(codes[i]))
    assert lock_order(items, [0, 1, 2, 3]) == [*by_hash, 3]
    assert lock_order(items, [3, 2, 1, 0]) == [*by_hash, 3]
    assert hash_download_code(codes[1]) == hash_download_code("00001111222233334444")


def _der() -> Encoding:
    return Encoding.DER


def test_record_events_matches_record_event_one_by_one(services: Services) -> None:
    now = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    events = [
        PendingEvent("test.one", actor="a", now=now, subject="s1", details={"n": 1}),
        PendingEvent("test.two", actor="b", now=now + dt.timedelta(seconds=1)),
        PendingEvent("test.three", actor="c", now=now, details={"x": {"y": "中"}}),
    ]
    with services.sessions() as session:
        record_events(session, [])  # nothing, no statement
        record_events(session, events)
        session.commit()
        batched = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type.like("test.%")).order_by(AuditEvent.seq)
        ).all()
        batch_view = [(e.event_type, e.actor, e.subject, e.details, e.at) for e in batched]
        for event in events:
            record_event(
                session,
                event.event_type,
                actor=event.actor,
                now=event.now,
                subject=event.subject,
                details=event.details,
            )
        session.commit()
        single = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type.like("test.%")).order_by(AuditEvent.seq)
        ).all()[3:]
        assert [(e.event_type, e.actor, e.subject, e.details, e.at) for e in single] == batch_view
        assert [e.details for e in batched] == ['{"n":1}', "{}", '{"x":{"y":"中"}}']
        assert [e.at for e in batched] == [
            dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 1, 12, 0, 1, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC),
        ]
        seqs = [e.seq for e in [*batched, *single]]
        assert seqs == list(range(seqs[0], seqs[0] + 6))
        report = verify_chain(session)
        assert (report.ok, report.first_bad_seq) == (True, None)


def test_record_events_refuses_secrets_before_writing(services: Services) -> None:
    with services.sessions() as session:
        before = verify_chain(session).checked
        try:
            record_events(
                session,
                [
                    PendingEvent("test.ok", actor="a", now=services.clock()),
                    PendingEvent(
                        "test.bad", actor="a", now=services.clock(), details={"token": "x"}
                    ),
                ],
            )
        except ValueError as exc:
            assert str(exc) == "audit details must not carry secrets (key 'token')"
        else:
            raise AssertionError("a secret detail was accepted")
        session.rollback()
        assert verify_chain(session).checked == before


def test_fast_path_errors_in_the_ordinary_order(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[0])
    url = f"/api/v1/applications/{reference}/service-locations/1/certificate"
    bad_csr = {"download_code": codes[1], "csr": "not a CSR"}

    def code_of(response: Any) -> tuple[int, str]:
        return response.status_code, response.json()["code"]

    # No token, then an unknown one: 401 before the CSR is looked at.
    assert code_of(client.post(url, json=bad_csr)) == (401, "not_authenticated")
    assert code_of(client.post(url, json=bad_csr, headers=bearer("nope"))) == (
        401,
        "not_authenticated",
    )
    # An officer's token: the ordinary path's 403.
    officer = officer_token(client, services, "rev-fast", "reviewer")
    assert code_of(client.post(url, json=bad_csr, headers=bearer(officer))) == (
        403,
        "applicant_only",
    )
    # Application and location before the CSR.
    other = url.replace(reference, "HCP-00000000")
    assert code_of(client.post(other, json=bad_csr, headers=bearer(token))) == (
        404,
        "application_not_found",
    )
    for number in (9, 2**63):
        missing = url.replace("/service-locations/1/", f"/service-locations/{number}/")
        assert code_of(client.post(missing, json=bad_csr, headers=bearer(token))) == (
            404,
            "service_location_not_found",
        )
    # Then the CSR, then the download code.
    assert code_of(client.post(url, json=bad_csr, headers=bearer(token))) == (
        400,
        "csr_malformed",
    )
    wrong_code = {"download_code": "AAAA-BBBB-CCCC-DDDD-EEEE", "csr": make_csr()[1]}
    assert code_of(client.post(url, json=wrong_code, headers=bearer(token))) == (
        403,
        "download_code_invalid",
    )
    good = {"download_code": codes[1], "csr": make_csr()[1]}
    first = client.post(url, json=good, headers=bearer(token))
    assert first.status_code == 201, first.text
    assert code_of(client.post(url, json=good, headers=bearer(token))) == (
        409,
        "download_code_used",
    )


def test_the_cached_signer_follows_the_active_issuing_ca(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    """Every request reads the active issuing CA's id; a cached signer of another id
    (the CA was changed) is loaded again before the request is checked."""
    reference, token, codes = approved_application(client, services, samples[1])
    url = f"/api/v1/applications/{reference}/service-locations/{{n}}/certificate"

    def collect(number: int) -> dict[str, Any]:
        response = client.post(
            url.format(n=number),
            json={"download_code": codes[number], "csr": make_csr()[1]},
            headers=bearer(token),
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    collect(1)
    collector = client.app.state.csr_collector  # type: ignore[attr-defined]
    real = collector._signer
    with services.sessions() as session:
        active = load_signer(session, services.keystore)
    assert real is not None and real.authority.id == active.authority.id
    collector._signer = Signer(CertificateAuthority(id=-1), real.certificate, real.key)
    body = collect(2)
    assert collector._signer.authority.id == active.authority.id
    with services.sessions() as session:
        issuer_id = session.scalars(
            select(CertificateRecord.issuer_id).where(
                CertificateRecord.serial_number == body["serial_number"]
            )
        ).one()
    assert issuer_id == active.authority.id


def test_the_driver_cursor_lookup_returns_what_sqlalchemy_returns(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    """``registration.collection._lookup`` (driver cursor, statement compiled once; on a
    ``Connection`` or straight from the engine's pool) gives
    the values of SQLAlchemy's own execution of the same statement: aware UTC datetimes,
    enum members, booleans; and nothing for an unknown token."""
    import hashlib

    from registration.collection import _LOOKUP, _lookup

    reference, token, codes = approved_application(client, services, samples[2])
    params = {
        "b_token": hashlib.sha256(token.encode()).hexdigest(),
        "b_reference": reference,
        "b_number": 1,
        "b_code": hash_download_code(codes[1]),
        "b_spki": b"\x00" * 32,
    }
    with services.engine.connect() as connection:
        expected = connection.execute(_LOOKUP, params).one()
        got = _lookup(connection, params)
        missing = _lookup(connection, {**params, "b_token": "0" * 64})
    pooled = _lookup(services.engine, params)  # a pool connection for the statement alone
    assert pooled is not None and tuple(pooled) == tuple(expected)
    assert got is not None and tuple(got) == tuple(expected)
    assert [type(v).__name__ for v in got] == [type(v).__name__ for v in expected]
    assert got[2].tzinfo is dt.UTC and got[13].tzinfo is dt.UTC
    assert got[4] is ApplicationStatus.APPROVED
    assert (got[0], got[1], got[14]) == ("applicant", reference, False)
    assert missing is None

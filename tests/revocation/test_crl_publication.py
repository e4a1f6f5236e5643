"""CRL publication over the database: CRL numbers under concurrent publishers (threads
and processes, SQLite and PostgreSQL) and across restarts, the scheduler keeping the
served CRL fresh over a frozen-clock day, the HTTP validators and ``304``, expired
certificates leaving the CRL, and partitioned CRLs with issuingDistributionPoint —
every CRL checked with pkilint and ``openssl crl -verify``."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import asn1crypto.crl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from api.app import create_app
from api.services import Services, build_services
from api.settings import Settings
from api.tasks import run_tasks
from ca.models import CARole, CertificateAuthority
from ca.service import get_authority, initialise_hierarchy
from revocation.crl import build_crl, sign_crl
from revocation.models import PublishedCRL, Revocation
from revocation.service import (
    CRL_HISTORY,
    crl_entries,
    crl_entry_query,
    latest_crl,
    publish_all_crls,
    publish_crl,
    publish_crls_with_policy,
    revoke_and_publish,
    revoke_certificate,
    revoke_provider_certificates,
    stream_entry_der,
)
from tests.conftest import START, TEST_PASSPHRASE, FrozenClock
from tests.helpers import assert_lint_clean
from tests.revocation.support import (
    TIMEOUT,
    issue_client,
    issuing_certificate,
    root_certificate,
    write_pems,
)

ISSUING_CRL = "/pki/crl/ehrca-issuing-1.crl"


def _crl_number(der: bytes) -> int:
    crl = x509.load_der_x509_crl(der)
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _issuing_id(services: Services) -> int:
    with services.sessions() as session:
        return get_authority(session, CARole.ISSUING).id


def _openssl_crl_verify(tmp: Path, der: bytes, issuer: x509.Certificate) -> None:
    """``openssl crl -verify``: the signature checks out against the issuer."""
    crl_path, ca_path = tmp / "check.crl", tmp / "check-ca.pem"
    crl_path.write_bytes(der)
    ca_path.write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(crl_path),
            "-noout",
            "-CAfile",
            str(ca_path),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert done.returncode == 0 and "verify OK" in done.stdout + done.stderr, done.stderr


def _revoke(services: Services, serial_hex: str, reason: x509.ReasonFlags) -> int | None:
    with services.sessions() as session:
        outcome = revoke_and_publish(
            session,
            services.revocation,
            serial_hex=serial_hex,
            reason=reason,
            actor="sam",
            actor_role="security_officer",
            now=services.clock(),
        )
    assert outcome.publication.errors == ()
    return outcome.shard_crl_number


# ----------------------------------------------------------------------------- numbers


def test_crl_numbers_are_unique_and_consecutive_under_concurrent_threads(
    services: Services,
) -> None:
    issuer_id = _issuing_id(services)
    with services.sessions() as session:
        start = session.get_one(CertificateAuthority, issuer_id).crl_number
    threads, per_thread = 6, 4
    numbers: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def publisher() -> None:
        try:
            barrier.wait(TIMEOUT)
            for _ in range(per_thread):
                with services.sessions() as session:
                    row = publish_crl(
                        session,
                        services.keystore,
                        issuer_id,
                        now=services.clock(),
                        validity=dt.timedelta(hours=24),
                    )
                    assert _crl_number(row.crl_der) == row.crl_number
                with lock:
                    numbers.append(row.crl_number)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=publisher) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert sorted(numbers) == list(range(start + 1, start + threads * per_thread + 1))
    with services.sessions() as session:
        assert session.get_one(CertificateAuthority, issuer_id).crl_number == (
            start + threads * per_thread
        )
        kept = session.scalars(
            select(PublishedCRL.crl_number)
            .where(PublishedCRL.issuer_id == issuer_id)
            .order_by(PublishedCRL.crl_number)
        ).all()
    # Only the newest CRL_HISTORY are kept, and they are the highest numbers.
    assert list(kept) == list(
        range(start + threads * per_thread - CRL_HISTORY + 1, start + threads * per_thread + 1)
    )


def _publish_in_process(settings_json: str, issuer_id: int, count: int) -> list[int]:
    """Run in a spawned process: a second 'worker' with its own engine and key store."""
    settings = Settings.model_validate_json(settings_json).model_copy(
        update={"key_passphrase": SecretStr(TEST_PASSPHRASE)}  # dumped masked
    )
    services = build_services(settings)
    try:
        numbers = []
        for _ in range(count):
            with services.sessions() as session:
                row = publish_crl(
                    session,
                    services.keystore,
                    issuer_id,
                    now=dt.datetime.now(dt.UTC),
                    validity=dt.timedelta(hours=24),
                )
                numbers.append(row.crl_number)
        return numbers
    finally:
        services.dispose()


def test_crl_numbers_are_unique_across_worker_processes(
    services: Services, settings: Settings
) -> None:
    issuer_id = _issuing_id(services)
    with services.sessions() as session:
        start = session.get_one(CertificateAuthority, issuer_id).crl_number
    payload = settings.model_dump_json()
    # fork: the children start at once with everything imported; each builds its own
    # engine and key store and never touches the parent's connections.
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        results = pool.starmap(_publish_in_process, [(payload, issuer_id, 4)] * 3)
    numbers = sorted(n for result in results for n in result)
    assert numbers == list(range(start + 1, start + 13))
    for result in results:  # each worker saw its own numbers strictly grow
        assert result == sorted(result)


def test_crl_numbers_continue_after_a_restart(
    services: Services, settings: Settings, clock: FrozenClock
) -> None:
    issuer_id = _issuing_id(services)
    with services.sessions() as session:
        before = latest_crl(session, issuer_id)
    assert before is not None and before.crl_number == 1
    services.dispose()
    restarted = build_services(settings, clock=clock)
    try:
        restarted.publish_crls()
        with restarted.sessions() as session:
            after = latest_crl(session, issuer_id)
            assert after is not None and after.crl_number == 2
            root = get_authority(session, CARole.ROOT)
            assert root.crl_number == 2
    finally:
        restarted.dispose()


# ----------------------------------------------------------------------------- freshness


def test_served_crl_never_lapses_over_a_frozen_day_without_revocations(
    client: TestClient, services: Services, clock: FrozenClock, tmp_path: Path
) -> None:
    issuer = issuing_certificate(services)
    numbers = [_crl_number(client.get(ISSUING_CRL).content)]
    for hour in range(1, 31):
        clock.advance(hours=1)
        results = dict(run_tasks(services, {"crl.refresh"}))
        assert results["crl.refresh"] == (
            f"re-signed 2 CRLs: ehrca-root-1#{hour + 1}, ehrca-issuing-1#{hour + 1}"
        )
        # A second worker running the schedule in the same hour finds nothing due.
        assert dict(run_tasks(services, {"crl.refresh"}))["crl.refresh"] == "re-signed 0 CRLs"
        served = client.get(ISSUING_CRL)
        crl = x509.load_der_x509_crl(served.content)
        now = clock()
        assert crl.last_update_utc == now
        assert crl.next_update_utc == now + dt.timedelta(hours=24)
        assert crl.last_update_utc <= now < crl.next_update_utc
        max_age = int(served.headers["cache-control"].removeprefix("public, max-age="))
        assert now + dt.timedelta(seconds=max_age) <= crl.next_update_utc
        assert served.headers["expires"] == (now + dt.timedelta(hours=24)).strftime(
            "%a, %d %b %Y %H:%M:%S GMT"
        )
        numbers.append(_crl_number(served.content))
    assert numbers == list(range(1, 32))
    assert_lint_clean(client.get(ISSUING_CRL).content, kind="crl")
    _openssl_crl_verify(tmp_path, client.get(ISSUING_CRL).content, issuer)


def test_http_validators_max_age_and_304(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    first = client.get(ISSUING_CRL)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["last-modified"] == "Sun, 29 Nov 2026 09:00:00 GMT"
    assert first.headers["expires"] == "Mon, 30 Nov 2026 09:00:00 GMT"
    assert first.headers["cache-control"] == "public, max-age=300"
    pem = client.get("/pki/crl/ehrca-issuing-1.pem")
    assert pem.headers["etag"] != etag  # another representation, another tag

    not_modified = client.get(ISSUING_CRL, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert client.get(ISSUING_CRL, headers={"If-None-Match": f'W/{etag}, "x"'}).status_code == 304
    assert client.get(ISSUING_CRL, headers={"If-None-Match": '"other"'}).status_code == 200

    # Close to nextUpdate (no scheduler ran): max-age shrinks to what is left, then 0.
    clock.now = START + dt.timedelta(hours=24, seconds=-100)
    assert client.get(ISSUING_CRL).headers["cache-control"] == "public, max-age=100"
    clock.now = START + dt.timedelta(hours=25)
    assert client.get(ISSUING_CRL).headers["cache-control"] == "public, max-age=0"

    # A new CRL has a new tag: the old one no longer matches.
    services.publish_crls()
    assert client.get(ISSUING_CRL, headers={"If-None-Match": etag}).status_code == 200
    assert client.get("/pki/crl/nope.crl").status_code == 404
    assert client.get("/pki/crl/ehrca-issuing-1/shard-1.crl").status_code == 404
    assert client.get("/pki/crl/ehrca-issuing-1/shard-0.crl").status_code == 404
    assert client.get(f"/pki/crl/ehrca-issuing-1/shard-{2**64}.crl").status_code == 404
    assert client.get("/pki/crl/%00/shard-1.crl").status_code == 404


def test_empty_crl_omits_the_revoked_list(
    client: TestClient, services: Services, tmp_path: Path
) -> None:
    for name, issuer in (
        ("ehrca-issuing-1", issuing_certificate(services)),
        ("ehrca-root-1", root_certificate(services)),
    ):
        der = client.get(f"/pki/crl/{name}.crl").content
        tbs = asn1crypto.crl.CertificateList.load(der)["tbs_cert_list"]
        assert tbs["revoked_certificates"].contents == b""
        assert tbs["version"].native == "v2"
        assert_lint_clean(der, kind="crl")
        _openssl_crl_verify(tmp_path, der, issuer)


# ----------------------------------------------------------------------------- expiry


def test_expired_certificates_leave_the_crl(services: Services, clock: FrozenClock) -> None:
    certificate = issue_client(services)
    _revoke(services, certificate.serial_hex, x509.ReasonFlags.superseded)
    issuer_id = _issuing_id(services)
    not_after = certificate.certificate.not_valid_after_utc
    assert not_after == START + dt.timedelta(days=730, seconds=-1)

    def listed(at: dt.datetime, keep: dt.timedelta) -> bool:
        with services.sessions() as session:
            row = publish_crl(
                session,
                services.keystore,
                issuer_id,
                now=at,
                validity=dt.timedelta(hours=24),
                keep_expired=keep,
            )
        crl = x509.load_der_x509_crl(row.crl_der)
        assert_lint_clean(row.crl_der, kind="crl")
        return (
            crl.get_revoked_certificate_by_serial_number(int(certificate.serial_hex, 16))
            is not None
        )

    zero = dt.timedelta(0)
    assert listed(not_after, zero)  # notAfter is inclusive: still valid, still listed
    assert not listed(not_after + dt.timedelta(seconds=1), zero)
    assert listed(not_after + dt.timedelta(days=30), dt.timedelta(days=30))
    assert not listed(not_after + dt.timedelta(days=30, seconds=1), dt.timedelta(days=30))


def test_scheduler_drops_expired_entries(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    certificate = issue_client(services)
    _revoke(services, certificate.serial_hex, x509.ReasonFlags.key_compromise)
    assert len(x509.load_der_x509_crl(client.get(ISSUING_CRL).content)) == 1
    clock.now = certificate.certificate.not_valid_after_utc + dt.timedelta(hours=1)
    run_tasks(services, {"crl.refresh"})
    assert len(x509.load_der_x509_crl(client.get(ISSUING_CRL).content)) == 0


# ----------------------------------------------------------------------------- partitions


@pytest.fixture
def sharded(settings: Settings, clock: FrozenClock) -> Iterator[Services]:
    """Services with ``EHRCA_CRL_SHARDS=4`` over a fresh CA."""
    built = build_services(settings.model_copy(update={"crl_shards": 4}), clock=clock)
    with built.sessions() as session:
        initialise_hierarchy(session, built.keystore, built.ca_config, now=clock())
        publish_crls_with_policy(session, built.keystore, built.crl_policy, now=clock())
    yield built
    built.dispose()


def test_partitioned_crls(sharded: Services, tmp_path: Path) -> None:
    issuer = issuing_certificate(sharded)
    with sharded.sessions() as session:
        scopes = session.scalars(
            select(PublishedCRL.shard)
            .where(PublishedCRL.issuer_id == get_authority(session, CARole.ISSUING).id)
            .order_by(PublishedCRL.crl_number)
        ).all()
    assert list(scopes) == [None, 1, 2, 3, 4]
    issued = [issue_client(sharded, number=n, location_id=n) for n in range(1, 7)]
    for item in issued:
        shard = item.certificate.serial_number % 4 + 1
        assert item.record.crl_shard == shard
        cdp = item.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        assert [n.value for n in cdp.value[0].full_name or []] == [
            f"http://127.0.0.1:8000/pki/crl/ehrca-issuing-1/shard-{shard}.crl"
        ]
        assert_lint_clean(item.certificate.public_bytes(serialization.Encoding.DER))
    target, other = (
        issued[0],
        next(i for i in issued if i.record.crl_shard != issued[0].record.crl_shard),
    )
    shard_number = _revoke(sharded, target.serial_hex, x509.ReasonFlags.key_compromise)
    assert shard_number is not None

    with TestClient(create_app(sharded)) as client:
        url = f"/pki/crl/ehrca-issuing-1/shard-{target.record.crl_shard}.crl"
        served = client.get(url)
        assert served.status_code == 200
        assert served.headers["content-type"] == "application/pkix-crl"
        shard_crl = x509.load_der_x509_crl(served.content)
        assert _crl_number(served.content) == shard_number
        idp = shard_crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert idp.critical
        assert [n.value for n in idp.value.full_name or []] == [f"http://127.0.0.1:8000{url}"]
        assert idp.value.only_contains_user_certs
        assert [r.serial_number for r in shard_crl] == [target.certificate.serial_number]
        other_crl = x509.load_der_x509_crl(
            client.get(f"/pki/crl/ehrca-issuing-1/shard-{other.record.crl_shard}.crl").content
        )
        assert len(other_crl) == 0
        full = client.get(ISSUING_CRL).content
        full_crl = x509.load_der_x509_crl(full)
        assert [r.serial_number for r in full_crl] == [target.certificate.serial_number]
        with pytest.raises(x509.ExtensionNotFound):
            full_crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        for der in (served.content, full):
            assert_lint_clean(der, kind="crl")
            _openssl_crl_verify(tmp_path, der, issuer)
        root_crl = client.get("/pki/crl/ehrca-root-1.crl").content
        other_der = client.get(
            f"/pki/crl/ehrca-issuing-1/shard-{other.record.crl_shard}.crl"
        ).content

    # OpenSSL matches the partition to the certificate by distribution point.
    paths = write_pems(
        tmp_path,
        root=root_certificate(sharded),
        issuing=issuer,
        target=target.certificate,
        other=other.certificate,
    )

    def verify(leaf: Path, *crl_ders: bytes) -> subprocess.CompletedProcess[str]:
        crls = tmp_path / "crls.pem"
        crls.write_bytes(
            b"".join(
                x509.load_der_x509_crl(d).public_bytes(serialization.Encoding.PEM) for d in crl_ders
            )
        )
        return subprocess.run(
            [
                "openssl",
                "verify",
                "-x509_strict",
                "-purpose",
                "sslclient",
                "-crl_check_all",
                "-CAfile",
                str(paths["root"]),
                "-untrusted",
                str(paths["issuing"]),
                "-CRLfile",
                str(crls),
                str(leaf),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
            check=False,
        )

    revoked = verify(paths["target"], root_crl, served.content)
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    assert verify(paths["other"], root_crl, other_der).returncode == 0
    # A partition does not cover certificates of another partition.
    out_of_scope = verify(paths["other"], root_crl, served.content)
    assert out_of_scope.returncode != 0
    assert "different CRL scope" in out_of_scope.stdout + out_of_scope.stderr
    # The full CRL covers every partition.
    assert verify(paths["other"], root_crl, full).returncode == 0


def test_publish_all_crls_keeps_publishing_partitions_after_shards_are_lowered(
    sharded: Services,
) -> None:
    with sharded.sessions() as session:
        rows = publish_all_crls(
            session,
            sharded.keystore,
            now=sharded.clock(),
            validity=dt.timedelta(hours=24),
            shards=1,
            urls=sharded.ca_config.urls,
        )
        scopes = [(r.issuer.name, r.shard) for r in rows]
    assert scopes == [
        ("ehrca-root-1", None),
        ("ehrca-issuing-1", None),
        ("ehrca-issuing-1", 1),
        ("ehrca-issuing-1", 2),
        ("ehrca-issuing-1", 3),
        ("ehrca-issuing-1", 4),
    ]


# ----------------------------------------------------------------------------- stored entries


def _builder_reference(
    services: Services, row: PublishedCRL, *, shard: int | None = None, url: str | None = None
) -> x509.CertificateRevocationList:
    """cryptography's CertificateRevocationListBuilder over the same revocations (read
    from their columns, not from ``entry_der``), same number and times."""
    with services.sessions() as session:
        entries = crl_entries(session, row.issuer_id, shard=shard, expired_before=row.this_update)
        authority = session.get_one(CertificateAuthority, row.issuer_id)
        issuer = x509.load_der_x509_certificate(authority.certificate_der)
        key_ref = authority.key_ref
    return sign_crl(
        build_crl(
            issuer,
            entries,
            crl_number=row.crl_number,
            this_update=row.this_update,
            next_update=row.next_update,
            distribution_point=url,
        ),
        services.keystore.load_key(key_ref),
    )


def test_crl_from_stored_entries_matches_cryptography_builder(
    services: Services, clock: FrozenClock, tmp_path: Path
) -> None:
    """publish_crl concatenates the entry DER stored at revocation time; its TBSCertList
    is byte for byte the one cryptography's builder makes from the same revocations, in
    the same (revocation) order, with every reason and with and without invalidityDate;
    pkilint and ``openssl crl -verify`` accept it."""
    issued = [issue_client(services, location_id=n, number=n) for n in range(1, 8)]
    issued += [issue_client(services, reference="HCP-BULK0009", location_id=n) for n in (8, 9)]
    cases = [
        (x509.ReasonFlags.key_compromise, clock() - dt.timedelta(days=3, microseconds=5)),
        (x509.ReasonFlags.unspecified, None),
        (x509.ReasonFlags.superseded, None),
        (x509.ReasonFlags.cessation_of_operation, clock() - dt.timedelta(hours=1)),
        (x509.ReasonFlags.affiliation_changed, None),
        (x509.ReasonFlags.privilege_withdrawn, None),
        (x509.ReasonFlags.unspecified, clock() - dt.timedelta(seconds=1)),
    ]
    # Revoke in an order unlike issuance order (and unlike serial order).
    for index in (3, 0, 6, 1, 5, 2, 4):
        reason, invalid = cases[index]
        clock.advance(seconds=1.25)
        with services.sessions() as session:
            revoke_certificate(
                session,
                serial_hex=issued[index].serial_hex,
                reason=reason,
                actor="sam",
                actor_role="security_officer",
                now=clock(),
                invalidity_date=invalid,
            )
    with services.sessions() as session:
        revoke_provider_certificates(
            session,
            "HCP-BULK0009",
            x509.ReasonFlags.cessation_of_operation,
            actor="sam",
            now=clock(),
        )
        row = publish_crl(
            session,
            services.keystore,
            _issuing_id(services),
            now=clock(),
            validity=dt.timedelta(hours=24),
        )
    reference = _builder_reference(services, row)
    published = x509.load_der_x509_crl(row.crl_der)
    assert published.tbs_certlist_bytes == reference.tbs_certlist_bytes
    assert [r.serial_number for r in published] == [
        issued[i].certificate.serial_number for i in (3, 0, 6, 1, 5, 2, 4, 7, 8)
    ]
    assert published.is_signature_valid(issuing_certificate(services).public_key())  # type: ignore[arg-type]
    assert_lint_clean(row.crl_der, kind="crl")
    _openssl_crl_verify(tmp_path, row.crl_der, issuing_certificate(services))


def test_partition_from_stored_entries_matches_cryptography_builder(
    sharded: Services, tmp_path: Path
) -> None:
    """The same for a partition: issuingDistributionPoint, only its certificates."""
    issued = [issue_client(sharded, number=n, location_id=n) for n in range(1, 9)]
    shard = issued[0].record.crl_shard
    assert shard is not None
    for item in issued:
        _revoke(sharded, item.serial_hex, x509.ReasonFlags.superseded)
    with sharded.sessions() as session:
        row = publish_crl(
            session,
            sharded.keystore,
            _issuing_id(sharded),
            now=sharded.clock(),
            validity=dt.timedelta(hours=24),
            shard=shard,
            urls=sharded.crl_policy.urls,
        )
    url = f"http://127.0.0.1:8000/pki/crl/ehrca-issuing-1/shard-{shard}.crl"
    reference = _builder_reference(sharded, row, shard=shard, url=url)
    published = x509.load_der_x509_crl(row.crl_der)
    assert published.tbs_certlist_bytes == reference.tbs_certlist_bytes
    assert [r.serial_number for r in published] == [
        i.certificate.serial_number for i in issued if i.record.crl_shard == shard
    ]
    assert_lint_clean(row.crl_der, kind="crl")
    _openssl_crl_verify(tmp_path, row.crl_der, issuing_certificate(sharded))


def test_stream_entry_der_generic_path_reads_the_same_bytes(
    services: Services, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver-level reader (pysqlite / psycopg) and SQLAlchemy's ``yield_per``
    (other drivers) return the same entries in the same order, in batches."""
    issued = [issue_client(services, location_id=n, number=n) for n in range(1, 6)]
    for item in reversed(issued):
        _revoke(services, item.serial_hex, x509.ReasonFlags.superseded)
    issuer_id = _issuing_id(services)
    query = crl_entry_query(issuer_id, expired_before=clock())
    with services.sessions() as session:
        fast = list(stream_entry_der(session, query, batch=2))
        stored = session.scalars(select(Revocation.entry_der).order_by(Revocation.id)).all()
    monkeypatch.setattr(services.engine.dialect, "driver", "other")
    with services.sessions() as session:
        generic = list(stream_entry_der(session, query, batch=2))
    assert fast == generic
    assert [len(chunk) for chunk in fast] == [
        len(stored[0]) + len(stored[1]),
        len(stored[2]) + len(stored[3]),
        len(stored[4]),
    ]
    assert b"".join(fast) == b"".join(stored)
    assert (
        x509.load_der_x509_crl(
            latest_crl_der(services, issuer_id)
        ).get_revoked_certificate_by_serial_number(issued[0].certificate.serial_number)
        is not None
    )


def latest_crl_der(services: Services, issuer_id: int) -> bytes:
    with services.sessions() as session:
        row = latest_crl(session, issuer_id)
        assert row is not None
        return row.crl_der

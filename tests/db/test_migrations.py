"""The Alembic migrations build exactly the schema the models declare, and data
migrations write what the application writes."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography import x509
from sqlalchemy import inspect, select, text

from api.services import Services
from db.migrate import alembic_config, upgrade
from db.models import Base
from db.session import create_db_engine
from revocation.crl_der import encode_crl_entry
from revocation.models import Revocation
from revocation.service import revoke_certificate, revoke_provider_certificates
from tests.conftest import FrozenClock
from tests.revocation.support import issue_client

lz4_available = importlib.import_module(
    "db.migrations.versions.0008_revocation_entry_der"
).lz4_available


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def _entries(url: str) -> dict[int, tuple[str, dt.datetime, str, dt.datetime | None, bytes]]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    Revocation.id,
                    Revocation.serial_number,
                    Revocation.revocation_date,
                    Revocation.revocation_reason,
                    Revocation.invalidity_date,
                    Revocation.entry_der,
                )
            ).all()
    finally:
        engine.dispose()
    return {row[0]: (row[1], row[2], row[3], row[4], row[5]) for row in rows}


def test_0008_backfills_the_entry_der_the_revoke_path_writes(
    services: Services, clock: FrozenClock, database_url: str
) -> None:
    """Downgrading to 0007 drops ``revocations.entry_der``; upgrading again fills it for
    every existing row with exactly the bytes the revoke paths wrote (single and bulk,
    every reason kind, with and without invalidityDate)."""
    issued = [issue_client(services, location_id=n, number=n) for n in range(1, 5)]
    issue_client(services, reference="HCP-MIGR0008", location_id=9)
    cases = [
        (x509.ReasonFlags.key_compromise, clock() - dt.timedelta(days=2, microseconds=7)),
        (x509.ReasonFlags.unspecified, None),
        (x509.ReasonFlags.superseded, clock() - dt.timedelta(seconds=30)),
        (x509.ReasonFlags.affiliation_changed, None),
    ]
    for item, (reason, invalid) in zip(issued, cases, strict=True):
        clock.advance(seconds=2.5)
        with services.sessions() as session:
            revoke_certificate(
                session,
                serial_hex=item.serial_hex,
                reason=reason,
                actor="sam",
                actor_role="security_officer",
                now=clock(),
                invalidity_date=invalid,
            )
    with services.sessions() as session:
        revoke_provider_certificates(
            session,
            "HCP-MIGR0008",
            x509.ReasonFlags.cessation_of_operation,
            actor="sam",
            now=clock(),
        )
    services.dispose()
    written = _entries(database_url)
    assert len(written) == 5
    for serial, revoked_at, reason_name, invalid, der in written.values():
        assert der == encode_crl_entry(
            int(serial, 16), revoked_at, x509.ReasonFlags(reason_name), invalid
        )

    try:
        command.downgrade(alembic_config(database_url), "0007")
        engine = create_db_engine(database_url)
        try:
            columns = {c["name"] for c in inspect(engine).get_columns("revocations")}
        finally:
            engine.dispose()
        assert "entry_der" not in columns
    finally:
        upgrade(database_url)  # the schema is shared by the session's tests: back to head

    assert _entries(database_url) == written
    engine = create_db_engine(database_url)
    try:
        nullable = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("revocations")}
    finally:
        engine.dispose()
    assert nullable["entry_der"] is False


def test_0008_stores_crls_with_lz4_on_postgresql(database_url: str) -> None:
    """On PostgreSQL with lz4 (14+), ``crls.crl_der`` is lz4-compressed ('l')."""
    engine = create_db_engine(database_url)
    try:
        if engine.dialect.name != "postgresql":
            pytest.skip("TOAST compression is PostgreSQL's")
        with engine.connect() as connection:
            if not lz4_available(connection):
                pytest.skip("this PostgreSQL has no lz4")
            method = connection.execute(
                text(
                    "SELECT attcompression FROM pg_attribute "
                    "WHERE attrelid = 'crls'::regclass AND attname = 'crl_der'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert method == "l"

"""Shared fixtures: a database per test (SQLite, or PostgreSQL with
``EHRCA_TEST_DATABASE_URL``), a frozen clock, an initialised CA, the API client.

PostgreSQL: each test gets its own schema (``search_path``) migrated by Alembic and
dropped afterwards. If the server cannot be reached the tests are skipped with the
reason — except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from api.services import Services, build_services
from api.settings import Settings
from ca.service import initialise_hierarchy
from db.migrate import upgrade
from db.models import Base
from registration import passwords
from revocation.service import publish_all_crls

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "applications.json"
TEST_PASSPHRASE = "test-passphrase-not-secret"
START = dt.datetime(2026, 11, 29, 9, 0, 0, tzinfo=dt.UTC)


class FrozenClock:
    """A clock tests move by hand (``advance``); starts at :data:`START`."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


def _postgres_url() -> str | None:
    return os.environ.get("EHRCA_TEST_DATABASE_URL") or None


@pytest.fixture(scope="session")
def postgres_base_url() -> str | None:
    """The PostgreSQL URL under test, checked once; ``None`` for SQLite runs."""
    url = _postgres_url()
    if url is None:
        return None
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        message = f"PostgreSQL at {url} is unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def migrated_template(
    tmp_path_factory: pytest.TempPathFactory, postgres_base_url: str | None
) -> Iterator[str]:
    """A database migrated once per test session (per xdist worker): a SQLite file to
    copy, or a PostgreSQL schema to empty between tests."""
    if postgres_base_url is None:
        path = tmp_path_factory.mktemp("template") / "ehrca.db"
        upgrade(f"sqlite:///{path}")
        yield str(path)
        return
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(postgres_base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_base_url else "?"
    url = f"{postgres_base_url}{sep}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _empty_postgres_schema(url: str) -> None:
    """TRUNCATE every table but Alembic's, then re-seed what the migrations insert."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            tables = [t.name for t in Base.metadata.sorted_tables]
            conn.execute(
                text(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
                )
            )
            conn.execute(
                text("INSERT INTO audit_head (id, seq, last_hash) VALUES (1, 0, :h)"),
                {"h": "0" * 64},
            )
    finally:
        engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path, migrated_template: str, postgres_base_url: str | None) -> str:
    """A freshly migrated, empty database for one test: a copy of the SQLite template,
    or the session's PostgreSQL schema emptied."""
    if postgres_base_url is None:
        path = tmp_path / "ehrca.db"
        shutil.copyfile(migrated_template, path)
        return f"sqlite:///{path}"
    _empty_postgres_schema(migrated_template)
    return migrated_template


@pytest.fixture(autouse=True)
def cheap_password_hashing(request: pytest.FixtureRequest) -> Iterator[None]:
    """Argon2id at minimal cost for tests (production cost is ~50 ms a hash, by design);
    tests marked ``real_password_hashing`` keep the production parameters."""
    if request.node.get_closest_marker("real_password_hashing"):
        yield
        return
    previous = passwords.set_cost(time_cost=1, memory_cost_kib=8, parallelism=1)
    try:
        yield
    finally:
        passwords.restore(previous)


@pytest.fixture
def clock() -> FrozenClock:
    """The frozen clock every service in the test uses."""
    return FrozenClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings pointing at the test's database, key and var directories."""
    return Settings(
        var_dir=tmp_path / "var",
        keys_dir=tmp_path / "keys",
        database_url=database_url,
        key_passphrase=TEST_PASSPHRASE,
        public_base_url="http://127.0.0.1:8000",
        _env_file=None,
    )


@pytest.fixture
def services(settings: Settings, clock: FrozenClock) -> Iterator[Services]:
    """Services with an initialised CA (root, issuing, mTLS server) and first CRLs."""
    built = build_services(settings, clock=clock)
    with built.sessions() as session:
        initialise_hierarchy(session, built.keystore, built.ca_config, now=clock())
        publish_all_crls(
            session, built.keystore, now=clock(), validity=built.ca_config.crl_validity
        )
    yield built
    built.dispose()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """A TestClient over the HTTP API (server errors become 500 responses, as live)."""
    with TestClient(create_app(services), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def samples() -> list[dict[str, Any]]:
    """The fictional providers of ``shared/samples/applications.json``."""
    data: dict[str, Any] = json.loads(SAMPLES.read_text(encoding="utf-8"))
    applications: list[dict[str, Any]] = data["applications"]
    return applications

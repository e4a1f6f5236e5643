"""One round trip for what a CSR collection needs to know before the CA pipeline runs:
the applicant behind the bearer token, the application and service location, the
download code's state, whether the CSR's key is blocked and the active issuing CA.

The rules are those of :func:`registration.accounts.authenticate`,
:func:`registration.service.get_application` and
:func:`registration.service.approved_location`, applied in the same order through the
same checks (:func:`~registration.service.check_reference`,
:func:`~registration.service.check_collectable`,
:func:`~registration.service.check_location`); only the number of statements differs
(one Core ``SELECT`` with outer joins instead of five ORM loads, one of which read every
location of the application).
Bearer tokens of officers and people never reach this module: the collection route
hands them to the ordinary path, which refuses them with ``applicant_only``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Dialect, Table, and_, bindparam, exists, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.compiler import SQLCompiler

from ca.blocklist import BlockedKey
from ca.models import CARole, CertificateAuthority
from db.driver import driver_parameters, uses_driver_cursor
from issuance.models import DownloadCode
from issuance.service import ApprovedLocation
from registration.accounts import REFERENCE_PATTERN
from registration.errors import ApplicationNotFound, NotAuthenticated
from registration.models import AccessToken, Application, ServiceLocation
from registration.service import check_collectable, check_location, check_reference


@dataclass(frozen=True, slots=True)
class CodeState:
    """The stored download code matching the typed one (by SHA-256), if any.

    Attributes:
        service_location_id: the location it was issued for.
        used: ``used_at`` is set.
        expires_at: aware UTC.
    """

    service_location_id: int
    used: bool
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CollectionTarget:
    """What :func:`collection_target` found.

    Attributes:
        subject_kind: ``applicant``, ``officer`` or ``person``: anything but an applicant
            is handed to the ordinary path by the caller.
        location: the approved location (``None`` unless ``subject_kind`` is
            ``applicant``).
        code: the download code's state (``None``: no code with that hash).
        key_blocked: the CSR's SPKI SHA-256 is on the block list (``ca.blocklist``).
        issuing_ca_id: id of the active issuing CA (``None``: not initialised).
    """

    subject_kind: str
    location: ApprovedLocation | None
    code: CodeState | None
    key_blocked: bool
    issuing_ca_id: int | None


_location = cast(Table, ServiceLocation.__table__).alias("sl")
#: The one statement of :func:`collection_target`, built once (parameters ``b_token``,
#: ``b_reference``, ``b_number``, ``b_code``, ``b_spki``).
_LOOKUP = (
    select(
        AccessToken.subject_kind,
        AccessToken.subject,
        AccessToken.expires_at,
        Application.id,
        Application.status,
        Application.name_en,
        Application.name_zh,
        _location.c.id,
        _location.c.name_en,
        _location.c.name_zh,
        _location.c.removed_at,
        DownloadCode.service_location_id,
        DownloadCode.used_at,
        DownloadCode.expires_at,
        exists()
        .where(BlockedKey.spki_sha256 == bindparam("b_spki"))
        .correlate(None)
        .label("blocked"),
        select(func.max(CertificateAuthority.id))
        .where(
            CertificateAuthority.role == CARole.ISSUING,
            CertificateAuthority.active.is_(True),
        )
        .scalar_subquery()
        .label("issuing_ca_id"),
    )
    .select_from(AccessToken)
    .outerjoin(
        Application,
        and_(
            Application.reference == bindparam("b_reference"),
            AccessToken.subject == Application.reference,
        ),
    )
    .outerjoin(
        _location,
        and_(
            _location.c.application_id == Application.id,
            _location.c.number == bindparam("b_number"),
        ),
    )
    .outerjoin(DownloadCode, DownloadCode.code_sha256 == bindparam("b_code"))
    .where(AccessToken.token_sha256 == bindparam("b_token"))
)


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """:data:`_LOOKUP` compiled once for one dialect, run on the driver's cursor.

    Attributes:
        sql: the statement text in the driver's parameter style.
        compiled: the compiled statement (its bind order, :func:`db.driver.driver_parameters`).
        constants: the statement's own literals (the issuing role, ``active``), bound.
        binds / results: SQLAlchemy's bind and result processors of each parameter and
            column for this dialect (``None``: the driver's value is used as is), so
            values are exactly those a SQLAlchemy ``Row`` would hold (aware UTC
            datetimes from ``db.base.UTCDateTime``, ``ApplicationStatus`` members).
    """

    sql: str
    compiled: SQLCompiler
    binds: dict[str, Callable[[Any], Any] | None]
    results: tuple[Callable[[Any], Any] | None, ...]
    constants: dict[str, Any]


_DRIVER_STATEMENTS: dict[tuple[str, str], _DriverStatement] = {}


def _driver_statement(dialect: Dialect) -> _DriverStatement:
    key = (dialect.name, dialect.driver)
    found = _DRIVER_STATEMENTS.get(key)
    if found is None:
        compiled = _LOOKUP.compile(dialect=dialect)
        binds: dict[str, Callable[[Any], Any] | None] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        constants = {
            name: bind.effective_value
            if (process := binds[name]) is None
            else process(bind.effective_value)
            for name, bind in compiled.binds.items()
            if not name.startswith("b_")
        }
        found = _DRIVER_STATEMENTS[key] = _DriverStatement(
            str(compiled),
            compiled,
            binds,
            tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in _LOOKUP.selected_columns
            ),
            constants,
        )
    return found


def _lookup(source: Connection | Engine, params: dict[str, Any]) -> Sequence[Any] | None:
    """The first row of :data:`_LOOKUP` with ``params``, or ``None``.

    On SQLite (pysqlite) and PostgreSQL (psycopg 3) the statement compiled once
    (:func:`_driver_statement`) runs on the driver's cursor: of ``source``'s pooled
    connection, in its transaction, for a ``Connection``; of a connection checked out
    of the pool for this statement alone (``Engine.raw_connection``, returned with a
    rollback) for an ``Engine``. SQLAlchemy's per-execution work (``Connection`` and its
    event dispatch, cache key, execution context, ``Row``) cost more than the query
    itself on the collection fast path. Parameters and columns still go through
    SQLAlchemy's processors for the dialect. Other dialects: SQLAlchemy's execution.
    """
    dialect = source.dialect
    if not uses_driver_cursor(dialect):
        if isinstance(source, Engine):
            with source.connect() as connection:
                return connection.execute(_LOOKUP, params).first()
        return source.execute(_LOOKUP, params).first()
    statement = _driver_statement(dialect)
    bound = dict(statement.constants)
    for name, value in params.items():
        process = statement.binds[name]
        bound[name] = value if process is None else process(value)
    if isinstance(source, Engine):
        pooled = source.raw_connection()
        try:
            raw = _fetch_one(pooled.driver_connection, statement, bound)
        finally:
            pooled.close()
    else:
        raw = _fetch_one(source.connection.driver_connection, statement, bound)
    if raw is None:
        return None
    return [
        value if process is None or value is None else process(value)
        for value, process in zip(raw, statement.results, strict=True)
    ]


def _fetch_one(driver: Any, statement: _DriverStatement, bound: dict[str, Any]) -> Any:
    cursor = driver.cursor()
    try:
        cursor.execute(statement.sql, driver_parameters(statement.compiled, bound))
        return cursor.fetchone()
    finally:
        cursor.close()


def collection_target(
    connection: Connection | Engine,
    *,
    token_sha256: str,
    reference: str,
    number: int,
    code_sha256: str,
    spki_sha256: bytes,
    now: dt.datetime,
) -> CollectionTarget:
    """Authenticate the caller and find the location to collect for, in one statement.

    Args:
        connection: a ``Connection`` (the statement runs in its transaction) or an
            ``Engine`` (a pooled connection for this statement alone: the fast path).
        token_sha256: SHA-256 hex of the bearer token (``registration.accounts``).
        code_sha256: ``issuance.codes.hash_download_code`` of the typed code.
        spki_sha256: ``ca.blocklist.spki_sha256`` of the CSR's key (32 bytes).

    Raises:
        registration.errors.NotAuthenticated: unknown or expired token.
        registration.errors.ApplicationNotFound: another applicant's application, a
            reference of the wrong shape, or none.
        registration.errors.ApplicationLapsed, ApplicationWithdrawn, NotCollectable,
        ServiceLocationNotFound, ServiceLocationRemoved: as
            :func:`registration.service.approved_location`.
    """
    shaped = REFERENCE_PATTERN.fullmatch(reference) is not None
    row = _lookup(
        connection,
        {
            "b_token": token_sha256,
            # Never bound when misshaped (PostgreSQL refuses text with NUL).
            "b_reference": reference if shaped else "",
            # A path number out of the column's range is no location.
            "b_number": number if 1 <= number < 2**31 else 0,
            "b_code": code_sha256,
            "b_spki": spki_sha256,
        },
    )
    if row is None or row[2] <= now:
        raise NotAuthenticated("the bearer token is unknown or has expired")
    (kind, subject, _expires, app_id, status, name_en, name_zh) = row[:7]
    (loc_id, loc_name_en, loc_name_zh, removed_at) = row[7:11]
    code = None if row[11] is None else CodeState(row[11], row[12] is not None, row[13])
    blocked, issuing_ca_id = bool(row[14]), row[15]
    if kind != "applicant":
        return CollectionTarget(kind, None, code, blocked, issuing_ca_id)
    check_reference(reference, subject, is_officer=False)
    if app_id is None:
        raise ApplicationNotFound(f"no application {reference}")
    check_collectable(status)
    check_location(reference, number, found=loc_id is not None, removed_at=removed_at)
    approved = ApprovedLocation(
        provider_reference=reference,
        service_location_id=loc_id,
        number=number,
        provider_name_en=name_en or reference,
        provider_name_zh=name_zh,
        location_name_en=loc_name_en,
        location_name_zh=loc_name_zh,
    )
    return CollectionTarget(kind, approved, code, blocked, issuing_ca_id)

"""The tamper-evident audit trail: an append-only, hash-chained table of
security-relevant events (logins, decisions, issuance, PKCS#12 delivery,
revocation, CRL and key changes, officer account changes).

Each row's ``row_hash`` is SHA-256 over the previous row's hash and the row's
canonical content (JSON, sorted keys, no whitespace, UTF-8), so changing,
deleting or reordering a row breaks every later link; :func:`verify_chain`
reports the first broken row.

Appending is serialised by the single ``audit_head`` row: ``UPDATE audit_head SET
seq = seq + 1 ... RETURNING`` takes a row lock on PostgreSQL and SQLite's write
lock, so concurrent writers in several workers get consecutive sequence numbers
and chain onto the right predecessor. The event is staged in the caller's
transaction and becomes durable with the caller's commit — an event is never
recorded for work that was rolled back.

``ca`` is the bottom domain package, so every other package may call this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.base import Base

GENESIS_HASH = "0" * 64
#: Detail keys that may never be recorded (secrets): checked case-insensitively as
#: substrings of every key, at any depth.
FORBIDDEN_DETAIL_KEYS = (
    "password",
    "passphrase",
    "private_key",
    "download_code",
    "token",
    "secret",
)


class AuditHead(Base):
    """The single row (``id = 1``) holding the chain's last sequence number and hash."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """One audit event. ``seq`` runs 1, 2, 3 ... without gaps."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[dt.datetime]
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str | None] = mapped_column(String(128), index=True)
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


def _check_details(details: Mapping[str, Any], path: str = "") -> None:
    for key, value in details.items():
        lowered = str(key).lower()
        if any(word in lowered for word in FORBIDDEN_DETAIL_KEYS):
            raise ValueError(f"audit details must not carry secrets (key {path}{key!r})")
        if isinstance(value, Mapping):
            _check_details(value, f"{path}{key}.")


def canonical_content(
    *, seq: int, at: dt.datetime, event_type: str, actor: str, subject: str | None, details: str
) -> bytes:
    """The bytes a row's hash covers (besides the previous hash)."""
    return json.dumps(
        {
            "seq": seq,
            "at": at.astimezone(dt.UTC).isoformat(),
            "event_type": event_type,
            "actor": actor,
            "subject": subject,
            "details": json.loads(details),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def chain_hash(prev_hash: str, content: bytes) -> str:
    """SHA-256 hex of ``prev_hash`` (ASCII hex) followed by ``content``."""
    return hashlib.sha256(prev_hash.encode("ascii") + content).hexdigest()


def record_event(
    session: Session,
    event_type: str,
    *,
    actor: str,
    now: dt.datetime,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the chain in the caller's transaction (the caller commits).

    Args:
        event_type: dotted name, e.g. ``auth.login_failed``, ``certificate.issued``.
        actor: who did it (officer name, application reference, ``system``).
        subject: what it concerns (serial number, reference, officer name).
        details: JSON-serialisable facts; never secrets.

    Raises:
        ValueError: ``details`` has a key naming a secret (see
            :data:`FORBIDDEN_DETAIL_KEYS`) or is not JSON-serialisable.
    """
    details = dict(details or {})
    _check_details(details)
    details_json = json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    seq, prev_hash = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.last_hash)
    ).one()
    at = now.replace(microsecond=0)
    row_hash = chain_hash(
        prev_hash,
        canonical_content(
            seq=seq,
            at=at,
            event_type=event_type,
            actor=actor,
            subject=subject,
            details=details_json,
        ),
    )
    event = AuditEvent(
        seq=seq,
        at=at,
        event_type=event_type,
        actor=actor,
        subject=subject,
        details=details_json,
        prev_hash=prev_hash,
        row_hash=row_hash,
    )
    session.add(event)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_hash=row_hash))
    return event


_head = cast(Table, AuditHead.__table__)
#: :func:`record_events`' statements, built once (Core, no ORM unit of work).
_ADVANCE = (
    update(_head)
    .where(_head.c.id == 1)
    .values(seq=_head.c.seq + bindparam("b_count", type_=BigInteger))
    .returning(_head.c.seq, _head.c.last_hash)
)
_INSERT_EVENT = insert(cast(Table, AuditEvent.__table__))
_SET_HEAD_HASH = update(_head).where(_head.c.id == 1).values(last_hash=bindparam("b_hash"))


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event for :func:`record_events` (the arguments of :func:`record_event`)."""

    event_type: str
    actor: str
    now: dt.datetime
    subject: str | None = None
    details: Mapping[str, Any] | None = None


def record_events(session: Session, events: Sequence[PendingEvent]) -> None:
    """Append ``events`` to the chain in order, in the caller's transaction, under one
    acquisition of the head lock: ``seq`` moves by ``len(events)`` in one ``UPDATE ...
    RETURNING``, the rows are inserted with one executemany and the head's hash is set
    once — three statements for any number of events, the same rows and hashes as
    calling :func:`record_event` for each.

    Raises:
        ValueError: as :func:`record_event` (checked for every event before anything is
            written).
    """
    if not events:
        return
    prepared = []
    for event in events:
        details = dict(event.details or {})
        _check_details(details)
        prepared.append(
            (
                event,
                json.dumps(
                    details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
                ),
            )
        )
    connection = session.connection()
    last_seq, prev_hash = connection.execute(_ADVANCE, {"b_count": len(events)}).one()
    seq = last_seq - len(events)
    rows = []
    for event, details_json in prepared:
        seq += 1
        at = event.now.replace(microsecond=0)
        row_hash = chain_hash(
            prev_hash,
            canonical_content(
                seq=seq,
                at=at,
                event_type=event.event_type,
                actor=event.actor,
                subject=event.subject,
                details=details_json,
            ),
        )
        rows.append(
            {
                "seq": seq,
                "at": at,
                "event_type": event.event_type,
                "actor": event.actor,
                "subject": event.subject,
                "details": details_json,
                "prev_hash": prev_hash,
                "row_hash": row_hash,
            }
        )
        prev_hash = row_hash
    connection.execute(_INSERT_EVENT, rows)
    connection.execute(_SET_HEAD_HASH, {"b_hash": prev_hash})


def lock_chain(session: Session) -> None:
    """Take the chain's head lock now, in the caller's transaction (the lock that
    :func:`record_event` takes): a row lock on PostgreSQL, SQLite's write lock. Work
    staged after it is serialised with every other writer of the chain until commit
    (revocation uses it so revocation ids grow in commit order)."""
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of :func:`list_events` (all optional, combined with AND).

    Attributes:
        event_type / actor / subject: exact matches.
        since / until: ``since <= at < until`` (aware datetimes).
        limit: page size (1..1000); offset: rows to skip (0..2**31-1).
    """

    event_type: str | None = None
    actor: str | None = None
    subject: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = 100
    offset: int = 0


def list_events(session: Session, query: AuditQuery) -> tuple[int, list[AuditEvent]]:
    """Events matching ``query`` in chain order (``seq`` ascending).

    Returns:
        ``(total matching, the page)``.
    """
    conditions = []
    if query.event_type is not None:
        conditions.append(AuditEvent.event_type == query.event_type)
    if query.actor is not None:
        conditions.append(AuditEvent.actor == query.actor)
    if query.subject is not None:
        conditions.append(AuditEvent.subject == query.subject)
    if query.since is not None:
        conditions.append(AuditEvent.at >= query.since)
    if query.until is not None:
        conditions.append(AuditEvent.at < query.until)
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions)) or 0
    rows = session.scalars(
        select(AuditEvent)
        .where(*conditions)
        .order_by(AuditEvent.seq)
        .limit(query.limit)
        .offset(query.offset)
    ).all()
    return total, list(rows)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Result of :func:`verify_chain`.

    Attributes:
        ok: the whole chain verifies and ends at the head.
        checked: rows read.
        first_bad_seq: sequence number of the first broken row (``None`` if ok).
        problem: ``modified``, ``deleted``, ``reordered`` or ``head_mismatch``.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify_chain(session: Session, *, batch: int = 5000) -> ChainReport:
    """Recompute every link in ``seq`` order and report the first broken one.

    - a row whose ``row_hash`` does not match its content: ``modified``;
    - a gap in ``seq`` (or a missing tail, seen at the head): ``deleted``;
    - a row whose ``prev_hash`` is not the previous row's hash: ``reordered`` (rows
      swapped or re-linked).
    """
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.seq > last_seq)
            .order_by(AuditEvent.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            checked += 1
            if row.seq != expected_seq:
                return ChainReport(False, checked, expected_seq, "deleted")
            content = canonical_content(
                seq=row.seq,
                at=row.at,
                event_type=row.event_type,
                actor=row.actor,
                subject=row.subject,
                details=row.details,
            )
            if row.prev_hash != prev_hash:
                return ChainReport(False, checked, row.seq, "reordered")
            if chain_hash(row.prev_hash, content) != row.row_hash:
                return ChainReport(False, checked, row.seq, "modified")
            prev_hash = row.row_hash
            expected_seq += 1
            last_seq = row.seq
    head = session.get(AuditHead, 1)
    if head is None or head.seq != expected_seq - 1 or head.last_hash != prev_hash:
        return ChainReport(
            False,
            checked,
            expected_seq,
            "head_mismatch" if head and head.seq < expected_seq else "deleted",
        )
    return ChainReport(True, checked)

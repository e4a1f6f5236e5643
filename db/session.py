"""Engine and session factories.

SQLite (embedded default) gets WAL journaling, ``synchronous=FULL`` (durable: see
:data:`SQLITE_SYNCHRONOUS`), a busy timeout and foreign keys on each connection.
PostgreSQL is used as is (``postgresql+psycopg://`` URLs, psycopg 3).

SQLite allows one writer at a time, and a connection that finds the write lock taken
waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, ... up to 100 ms between
tries: under concurrent writers (the API's thread pool, several workers) waiters sleep
while the lock is free and a request can wait for seconds (``bench/issue_http.py``:
p99 1.0-2.3 s at 16 connections on 2 cores). So writers queue in front of SQLite
instead: before a connection's first INSERT/UPDATE/DELETE/REPLACE (the statements on
which Python's sqlite3 opens its transaction) it takes a per-database writer lock — a
``threading.Lock`` between the threads of this process, then ``flock`` on
``<database>.writer-lock`` between processes, both woken at once on release — and
releases it when the transaction ends (commit, rollback, close); measured p99 0.24-0.63
s in the same runs, throughput unchanged within the noise. SQLite's own locking is
unchanged underneath (same one-writer semantics; the busy timeout still applies to
other programs).
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: ``FULL``: a commit returns only after the WAL is fsynced, so a committed row survives
#: power loss, not only a crash of the process (``NORMAL`` in WAL mode may lose the last
#: commits on power loss: https://www.sqlite.org/pragma.html#pragma_synchronous). The CA
#: needs it: a reservation must be on disk before the real signature (record before
#: sign) and an issued row before its response leaves. Issuance group-commits
#: (``issuance.batch``), so the fsync (about 2.4 ms on the benchmark machine) is paid
#: once per batch, not per certificate.
SQLITE_SYNCHRONOUS = "FULL"
#: SQLSTATEs of a transaction the server aborted because of a concurrent one: PostgreSQL
#: ``deadlock_detected`` (40P01) and ``serialization_failure`` (40001), class 40
#: "Transaction Rollback" (https://www.postgresql.org/docs/current/errcodes-appendix.html).
#: Nothing of the aborted transaction is kept; running it again may succeed.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
#: SQLite's messages for a lock that outlived ``busy_timeout`` (SQLITE_BUSY, SQLITE_LOCKED:
#: https://www.sqlite.org/rescode.html#busy).
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")
#: Statements on which Python's sqlite3 (legacy transaction control) opens a transaction.
_SQLITE_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


class _WriterLock:
    """The writer lock of one SQLite database file: threads, then processes."""

    def __init__(self, path: str | None) -> None:
        self._threads = threading.Lock()
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        if not self._threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise sqlite3.OperationalError("database is locked (writer lock timeout)")
        try:
            if self._path is not None:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


_writer_locks: dict[str, _WriterLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(database: str) -> _WriterLock:
    key = os.path.abspath(database) if database and database != ":memory:" else database
    with _writer_locks_guard:
        lock = _writer_locks.get(key)
        if lock is None:
            path = f"{key}.writer-lock" if key and key != ":memory:" else None
            lock = _writer_locks[key] = _WriterLock(path)
        return lock


class _QueuedWriterConnection(sqlite3.Connection):
    """A sqlite3 connection that holds its database's :class:`_WriterLock` from its
    first write statement until the transaction ends."""

    _ehrca_lock: _WriterLock | None = None
    _ehrca_holding = False

    def _ehrca_before_write(self) -> None:
        if not self._ehrca_holding and self._ehrca_lock is not None:
            self._ehrca_lock.acquire()
            self._ehrca_holding = True

    def _ehrca_release(self) -> None:
        if self._ehrca_holding and self._ehrca_lock is not None:
            self._ehrca_holding = False
            self._ehrca_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self._ehrca_release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if not self.in_transaction:
                self._ehrca_release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._ehrca_release()


def is_transaction_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error from a conflict with a concurrent transaction,
    which running the transaction again may not meet: PostgreSQL SQLSTATE 40P01
    (deadlock) or 40001 (serialization failure), see :data:`RETRYABLE_SQLSTATES`, or a
    SQLite lock that outlived ``busy_timeout``. Other errors (constraint violations,
    connection loss, programming errors) are ``False``.

    Args:
        exc: any exception (SQLAlchemy wraps the driver's in ``DBAPIError.orig``).
    """
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return any(m in message for m in _SQLITE_BUSY_MESSAGES)
    return False


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    Args:
        url: SQLAlchemy database URL.
        kwargs: passed to :func:`sqlalchemy.create_engine`.

    Returns:
        An engine; for SQLite each new connection runs ``PRAGMA foreign_keys=ON``,
        ``journal_mode=WAL``, ``busy_timeout`` (milliseconds) and ``synchronous=FULL``.
    """
    if url.startswith("sqlite"):
        kwargs.setdefault(
            "connect_args", {"check_same_thread": False, "factory": _QueuedWriterConnection}
        )
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        writer_lock = _writer_lock(engine.url.database or "")

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            if isinstance(dbapi_connection, _QueuedWriterConnection):
                dbapi_connection._ehrca_lock = writer_lock
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            cursor.close()

        @event.listens_for(engine, "before_cursor_execute")
        def _queue_writer(
            _conn: Any, cursor: Any, statement: str, *_args: Any, **_kwargs: Any
        ) -> None:
            connection = cursor.connection
            if isinstance(connection, _QueuedWriterConnection) and _SQLITE_WRITE.match(statement):
                connection._ehrca_before_write()

    return engine


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine`` that does not expire objects on commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session that commits on success and rolls back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

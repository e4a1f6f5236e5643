"""SQLite writers queue on a per-database lock (db.session) instead of polling in
SQLite's busy handler: concurrent writers from many threads all succeed, the lock is
held from the first write statement until commit, rollback or close, and readers are
never blocked by it."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, text

from db.session import _writer_lock, create_db_engine


def _engine(tmp_path: Path) -> Engine:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"))
    return engine


def test_concurrent_writers_all_commit(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(20):
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": k * 100 + i})
                    conn.execute(text("UPDATE t SET n = n + 1 WHERE id = 1"))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 160
    engine.dispose()


def test_lock_held_until_transaction_ends(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    lock = _writer_lock(str(tmp_path / "q.db"))
    for end in ("commit", "rollback", "close"):
        conn = engine.connect()
        conn.execute(text("SELECT count(*) FROM t"))  # reads do not take it
        assert lock._threads.acquire(blocking=False)
        lock._threads.release()
        conn.execute(text("INSERT INTO t (n) VALUES (1)"))
        assert not lock._threads.acquire(blocking=False)  # held by the writer
        with engine.connect() as reader:  # readers are not blocked
            reader.execute(text("SELECT count(*) FROM t")).scalar_one()
        getattr(conn, end)()
        if end != "close":
            conn.close()
        assert lock._threads.acquire(blocking=False)
        lock._threads.release()
    engine.dispose()


def test_sqlite_connections_are_durable(tmp_path: Path) -> None:
    """WAL with ``synchronous=FULL`` (2): a commit is fsynced before it returns, so a
    committed reservation or issued row survives power loss (``NORMAL`` would not)."""
    engine = _engine(tmp_path)
    with engine.connect() as conn:
        pragmas = [
            conn.execute(text(f"PRAGMA {name}")).scalar_one()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]
    assert pragmas == ["wal", 2, 1, 30000]
    engine.dispose()

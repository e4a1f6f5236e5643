"""CRL publication at 10k, 100k and 1M revoked certificates: seconds and peak RSS.

One publication = take the next CRL number (``UPDATE ... RETURNING``), read the
issuer's revoked entries from the database, build, sign with the issuing CA's P-256
key, store the DER in ``crls`` and commit. Each publication runs in its own
subprocess (``--child``), so its peak RSS is its own ``ru_maxrss`` (read with
``os.wait4``); the key is loaded before the clock starts (the service keeps it in
memory).

Two paths, both over the same rows:

- ``crl.publish.{10k,100k,1m}_s`` and ``crl.publish.1m_rss_mib``: the fast path,
  ``revocation.crl_der.assemble_crl`` over each entry's DER encoding as stored when it
  was revoked (``revocations.entry_der`` if the schema has it, else a bench-local
  table ``bench_crl_entries`` filled with ``revocation.crl_der.encode_crl_entry`` —
  the note says which). PostgreSQL concatenates the entries in the query
  (``string_agg(entry_der, '' ORDER BY id)``, fetched in binary format: text format
  ships bytea as hex and doubles the client's buffer); SQLite streams them into one
  buffer.
- ``crl.publish.segments.*``: the same, but the entry DERs are also kept
  pre-concatenated in segments of 10,000 revocations (bench-local
  ``bench_crl_segments``), so a publication reads about 100 rows instead of 1M: the
  evidence for storing segments rather than (or besides) one DER per revocation.
- ``crl.publish.current.*``: ``revocation.service.publish_crl`` as it is, whatever it
  does today. When 100k takes more than ``--current-1m-budget``/10 s, 1M is skipped
  (at least ten times as long) and recorded as null with the reason.

Rows go in by bulk (``COPY`` on PostgreSQL, ``executemany`` on SQLite), cumulatively:
10k, then 90k more, then 900k more. The foreign key to ``certificates`` is not
enforced while loading (``session_replication_role = replica`` on PostgreSQL, no
``foreign_keys`` pragma on SQLite): the publication reads only ``revocations``.
Every CRL written is checked afterwards (untimed): it parses, has the expected
number of entries and its signature verifies with the issuing CA's key.

Run: ``.venv/bin/python bench/crl_publish.py`` (about 3 minutes on PostgreSQL;
``--db sqlite``; ``--sizes 100,1000 --runs 1`` for a smoke run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, inspect, select, text, update

from bench.common import (
    Figure,
    print_figures,
    summarise,
    this_command,
    unavailable,
    write_results,
)
from bench.service import PASSPHRASE, Unavailable, database, init_instance, postgres_available

REASONS = [
    "keyCompromise",
    "superseded",
    "cessationOfOperation",
    "affiliationChanged",
    "unspecified",
]
REVOKED_AT = dt.datetime(2026, 6, 1, 8, 30, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2028, 6, 1, tzinfo=dt.UTC)
BENCH_TABLE = "bench_crl_entries"
SEGMENT_TABLE = "bench_crl_segments"
#: Entries per pre-concatenated segment (the "segments" variant).
SEGMENT = 10_000
CHUNK = 50_000


def _label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


# ----------------------------------------------------------------------------- loading


def _entries(
    start: int, count: int
) -> Iterator[tuple[int, str, str, str, dt.datetime | None, bytes]]:
    """(id, serial hex, reason, revoked_by, invalidity date, entry DER) for revocation ids
    start+1 .. start+count. Serials have exactly 159 bits (20 content octets), so each
    entry is a template from ``encode_crl_entry`` with the serial octets swapped in
    (checked against ``encode_crl_entry`` for the first entries)."""
    from revocation.crl_der import encode_crl_entry

    invalid_at = REVOKED_AT - dt.timedelta(days=1)
    templates: dict[tuple[str, bool], tuple[bytes, bytes]] = {}
    for reason in REASONS:
        for invalid in (False, True):
            der = encode_crl_entry(
                1 << 158, REVOKED_AT, x509.ReasonFlags(reason), invalid_at if invalid else None
            )
            assert der[2:4] == b"\x02\x14" and der[1] < 0x80
            templates[(reason, invalid)] = (der[:4], der[24:])
    for i in range(start + 1, start + count + 1):
        serial = secrets.randbits(158) | (1 << 158)
        reason = REASONS[i % len(REASONS)]
        invalid = i % 10 == 0
        head, tail = templates[(reason, invalid)]
        der = head + serial.to_bytes(20, "big") + tail
        if i - start <= 100:
            assert der == encode_crl_entry(
                serial, REVOKED_AT, x509.ReasonFlags(reason), invalid_at if invalid else None
            )
        yield i, f"{serial:040x}", reason, "bench", invalid_at if invalid else None, der


def _has_entry_der(engine: Engine) -> bool:
    return any(c["name"] == "entry_der" for c in inspect(engine).get_columns("revocations"))


def load_revocations(
    url: str, engine: Engine, issuer_id: int, start: int, count: int, entry_column: bool
) -> None:
    """Insert revocations ``start+1 .. start+count`` of ``issuer_id`` with their entry DERs
    (and the same DERs concatenated per :data:`SEGMENT` revocation ids into
    ``bench_crl_segments``)."""
    segments: dict[int, bytearray] = {}
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SET session_replication_role = replica")
            rev_cols = (
                "id, certificate_id, issuer_id, serial_number, revocation_date, "
                "revocation_reason, invalidity_date, revoked_by, not_valid_after"
            )
            if entry_column:
                rev_cols += ", entry_der"
            side_rows: list[tuple[int, int, bytes]] = []
            with cur.copy(f"COPY revocations ({rev_cols}) FROM STDIN") as rev_copy:
                for i, serial, reason, by, invalid, der in _entries(start, count):
                    values: list[object] = [
                        i,
                        i,
                        issuer_id,
                        serial,
                        REVOKED_AT,
                        reason,
                        invalid,
                        by,
                        NOT_AFTER,
                    ]
                    if entry_column:
                        values.append(der)
                    else:
                        side_rows.append((i, issuer_id, der))
                    segments.setdefault((i - 1) // SEGMENT, bytearray()).extend(der)
                    rev_copy.write_row(values)
            if not entry_column:
                with cur.copy(
                    f"COPY {BENCH_TABLE} (revocation_id, issuer_id, entry_der) FROM STDIN"
                ) as side:
                    for side_row in side_rows:
                        side.write_row(side_row)
            for number, piece in segments.items():
                cur.execute(
                    f"INSERT INTO {SEGMENT_TABLE} (issuer_id, segment_no, entries_der) "  # noqa: S608
                    "VALUES (%s, %s, %s) ON CONFLICT (issuer_id, segment_no) DO UPDATE SET "
                    f"entries_der = {SEGMENT_TABLE}.entries_der || EXCLUDED.entries_der",
                    (issuer_id, number, bytes(piece)),
                )
            raw.commit()
        finally:
            raw.close()
        return
    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        rows: list[tuple[object, ...]] = []
        side_rows = []
        for i, serial, reason, by, invalid, der in _entries(start, count):
            row: list[object] = [
                i,
                i,
                issuer_id,
                serial,
                _sqlite_time(REVOKED_AT),
                reason,
                _sqlite_time(invalid) if invalid else None,
                by,
                _sqlite_time(NOT_AFTER),
            ]
            if entry_column:
                row.append(der)
            else:
                side_rows.append((i, issuer_id, der))
            segments.setdefault((i - 1) // SEGMENT, bytearray()).extend(der)
            rows.append(tuple(row))
        marks = ", ".join("?" * len(rows[0]))
        columns = (
            "id, certificate_id, issuer_id, serial_number, revocation_date, "
            "revocation_reason, invalidity_date, revoked_by, not_valid_after"
        )
        if entry_column:
            columns += ", entry_der"
        connection.executemany(f"INSERT INTO revocations ({columns}) VALUES ({marks})", rows)  # noqa: S608
        if side_rows:
            connection.executemany(
                f"INSERT INTO {BENCH_TABLE} (revocation_id, issuer_id, entry_der) VALUES (?, ?, ?)",  # noqa: S608
                side_rows,
            )
        for number, piece in segments.items():
            old = connection.execute(
                f"SELECT entries_der FROM {SEGMENT_TABLE} WHERE issuer_id = ? AND segment_no = ?",  # noqa: S608
                (issuer_id, number),
            ).fetchone()
            connection.execute(
                f"INSERT OR REPLACE INTO {SEGMENT_TABLE} (issuer_id, segment_no, entries_der) "  # noqa: S608
                "VALUES (?, ?, ?)",
                (issuer_id, number, (old[0] if old else b"") + bytes(piece)),
            )
        connection.commit()
    finally:
        connection.close()


def _sqlite_time(value: dt.datetime) -> str:
    """How SQLAlchemy stores an aware datetime in SQLite (see db.base)."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")


# ------------------------------------------------------------------------------ child


def child(path: str, url: str, keys_dir: str, issuer_id: int, expect: int) -> None:
    """One publication; prints ``{"seconds": ..., "entries": ...}``."""
    from ca.keys import FileKeyStore
    from ca.models import CertificateAuthority
    from db.session import create_db_engine, create_session_factory
    from revocation.crl_der import assemble_crl
    from revocation.models import PublishedCRL
    from revocation.service import publish_crl

    engine = create_db_engine(url)
    sessions = create_session_factory(engine)
    keystore = FileKeyStore(Path(keys_dir), PASSPHRASE.encode())
    with sessions() as session:
        authority = session.get_one(CertificateAuthority, issuer_id)
        key = keystore.load_key(authority.key_ref)  # cached in the key store from here on
        issuer_der = authority.certificate_der
        entry_column = _has_entry_der(engine)
        session.rollback()
    now = dt.datetime.now(dt.UTC)
    validity = dt.timedelta(hours=24)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    with sessions() as session:
        if path == "current":
            publish_crl(session, keystore, issuer_id, now=now, validity=validity)
        else:
            crl_number = session.execute(
                update(CertificateAuthority)
                .where(CertificateAuthority.id == issuer_id)
                .values(crl_number=CertificateAuthority.crl_number + 1)
                .returning(CertificateAuthority.crl_number)
            ).scalar_one()
            table, id_column = (
                ("revocations", "id") if entry_column else (BENCH_TABLE, "revocation_id")
            )
            pieces: list[bytes] = []
            body = b""
            if engine.dialect.name == "postgresql":
                # The driver's binary format: text format ships bytea as hex, which
                # doubles the transfer and the result buffer (measured +229 MiB for a
                # 40 MB value against +114 MiB in binary).
                driver = session.connection().connection.driver_connection
                with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
                    if path == "segments":
                        cursor.execute(
                            f"SELECT entries_der FROM {SEGMENT_TABLE} "  # noqa: S608
                            "WHERE issuer_id = %s ORDER BY segment_no",
                            (issuer_id,),
                        )
                        pieces = [bytes(row[0]) for row in cursor.fetchall()]
                    else:
                        cursor.execute(
                            f"SELECT string_agg(entry_der, ''::bytea ORDER BY {id_column}) "  # noqa: S608
                            f"FROM {table} WHERE issuer_id = %s",
                            (issuer_id,),
                        )
                        row = cursor.fetchone()
                        body = bytes(row[0]) if row and row[0] is not None else b""
            else:
                driver = session.connection().connection.driver_connection
                if path == "segments":
                    pieces = [
                        bytes(row[0])
                        for row in driver.execute(  # type: ignore[union-attr]
                            f"SELECT entries_der FROM {SEGMENT_TABLE} "  # noqa: S608
                            "WHERE issuer_id = ? ORDER BY segment_no",
                            (issuer_id,),
                        )
                    ]
                else:
                    buffer = bytearray()
                    cursor = driver.execute(  # type: ignore[union-attr]
                        f"SELECT entry_der FROM {table} WHERE issuer_id = ? ORDER BY {id_column}",  # noqa: S608
                        (issuer_id,),
                    )
                    while rows := cursor.fetchmany(10_000):
                        for (der,) in rows:
                            buffer += der
                    body = bytes(buffer)
                    del buffer
            phases["read"] = time.perf_counter() - start
            this_update = now.replace(microsecond=0)
            der = assemble_crl(
                x509.load_der_x509_certificate(issuer_der),
                key,
                pieces if pieces else [body] if body else [],
                crl_number=crl_number,
                this_update=this_update,
                next_update=this_update + validity,
            )
            phases["assemble_sign"] = time.perf_counter() - start - phases["read"]
            del body, pieces
            session.add(
                PublishedCRL(
                    issuer_id=issuer_id,
                    crl_number=crl_number,
                    this_update=this_update,
                    next_update=this_update + validity,
                    crl_der=der,
                )
            )
            session.commit()
            phases["write_commit"] = (
                time.perf_counter() - start - phases["read"] - phases["assemble_sign"]
            )
    seconds = time.perf_counter() - start
    engine.dispose()
    print(json.dumps({"seconds": seconds, "entries": expect, "phases": phases}))


def run_child(
    path: str, url: str, keys_dir: Path, issuer_id: int, expect: int, timeout: float
) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one publication in a subprocess."""
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            path,
            "--url",
            url,
            "--keys",
            str(keys_dir),
            "--issuer",
            str(issuer_id),
            "--expect",
            str(expect),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN only cumulatively,
    # so the child reports nothing and we read our own record of it instead.
    if process.returncode != 0:
        raise RuntimeError(f"publication failed: {err.decode(errors='replace')[-2000:]}")
    data = json.loads(out.decode().strip().splitlines()[-1])
    if data.get("phases"):
        print("    " + ", ".join(f"{k} {v:.3f} s" for k, v in data["phases"].items()), flush=True)
    return float(data["seconds"]), _last_child_rss.get(process.pid, 0.0)


_last_child_rss: dict[int, float] = {}


def _popen_wait4() -> None:
    """Make ``subprocess`` reap children with ``os.wait4`` so each child's peak RSS
    (``ru_maxrss``, KiB on Linux) is recorded in :data:`_last_child_rss`."""
    original = subprocess.Popen._try_wait  # type: ignore[attr-defined]

    def _try_wait(self: subprocess.Popen[bytes], wait_flags: int) -> tuple[int, int]:
        try:
            pid, status, usage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            return original(self, wait_flags)  # type: ignore[no-any-return]
        if pid == self.pid:
            _last_child_rss[pid] = usage.ru_maxrss / 1024
        return pid, status

    subprocess.Popen._try_wait = _try_wait  # type: ignore[attr-defined]


def verify_latest(engine: Engine, issuer_id: int, expect: int) -> None:
    """The newest CRL parses, lists ``expect`` entries and its signature verifies."""
    from ca.models import CertificateAuthority
    from revocation.models import PublishedCRL

    with engine.connect() as conn:
        der = conn.execute(
            select(PublishedCRL.crl_der)
            .where(PublishedCRL.issuer_id == issuer_id)
            .order_by(PublishedCRL.crl_number.desc())
            .limit(1)
        ).scalar_one()
        issuer_der = conn.execute(
            select(CertificateAuthority.certificate_der).where(CertificateAuthority.id == issuer_id)
        ).scalar_one()
    crl = x509.load_der_x509_crl(der)
    issuer = x509.load_der_x509_certificate(issuer_der)
    public_key = issuer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    if not crl.is_signature_valid(public_key):
        raise AssertionError("CRL signature does not verify")
    if expect <= 100_000 and len(crl) != expect:
        raise AssertionError(f"CRL lists {len(crl)} entries, expected {expect}")


# ----------------------------------------------------------------------------- parent


def measure(db: str, sizes: list[int], runs: int, current_budget: float) -> list[Figure]:
    """Load each size cumulatively and publish it ``runs`` times on each path."""
    from db.session import create_db_engine

    _popen_wait4()
    command = this_command()
    figures: list[Figure] = []
    with (
        tempfile.TemporaryDirectory(prefix="ehrca-bench-crl-") as tmp,
        database(db, Path(tmp)) as url,
    ):
        instance = init_instance(Path(tmp), url, lint=False)
        engine = create_db_engine(url)
        entry_column = _has_entry_der(engine)
        if not entry_column:
            blob = "bytea" if engine.dialect.name == "postgresql" else "BLOB"
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"CREATE TABLE {BENCH_TABLE} (revocation_id INTEGER PRIMARY KEY, "
                        f"issuer_id INTEGER NOT NULL, entry_der {blob} NOT NULL)"
                    )
                )
        blob_type = "bytea" if engine.dialect.name == "postgresql" else "BLOB"
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE {SEGMENT_TABLE} (issuer_id INTEGER NOT NULL, "
                    f"segment_no INTEGER NOT NULL, entries_der {blob_type} NOT NULL, "
                    "PRIMARY KEY (issuer_id, segment_no))"
                )
            )
        with engine.connect() as conn:
            issuer_id = conn.execute(
                text("SELECT id FROM certificate_authorities WHERE role = 'issuing' AND active")
            ).scalar_one()
        where = (
            "revocations.entry_der"
            if entry_column
            else f"a bench-local table {BENCH_TABLE} (no revocations.entry_der column yet)"
        )
        note = f"fast path: crl_der.assemble_crl over entry DERs from {where}; {db}"
        keys = Path(instance.env["EHRCA_KEYS_DIR"])
        loaded = 0
        current_skip: str | None = None
        for size in sorted(sizes):
            started = time.perf_counter()
            while loaded < size:
                step = min(CHUNK * 4, size - loaded)
                load_revocations(url, engine, issuer_id, loaded, step, entry_column)
                loaded += step
            print(
                f"  loaded {size} revocations in {time.perf_counter() - started:.1f} s", flush=True
            )
            label = _label(size)
            fast = [run_child("fast", url, keys, issuer_id, size, 300) for _ in range(runs)]
            verify_latest(engine, issuer_id, size)
            print(
                f"  fast {label}: " + ", ".join(f"{s:.3f} s {m:.0f} MiB" for s, m in fast),
                flush=True,
            )
            figures.append(
                summarise(f"crl.publish.{label}_s", [s for s, _ in fast], "s", command, note)
            )
            figures.append(
                summarise(
                    f"crl.publish.{label}_rss_mib",
                    [m for _, m in fast],
                    "MiB peak RSS",
                    command,
                    note,
                )
            )
            segments = [run_child("segments", url, keys, issuer_id, size, 300) for _ in range(runs)]
            verify_latest(engine, issuer_id, size)
            print(
                f"  segments {label}: " + ", ".join(f"{s:.3f} s {m:.0f} MiB" for s, m in segments),
                flush=True,
            )
            segment_note = (
                f"fast path over entry DERs pre-concatenated in segments of {SEGMENT} "
                f"(bench-local {SEGMENT_TABLE}): crl_der.assemble_crl over "
                f"~{max(1, size // SEGMENT)} rows instead of {size}; {db}"
            )
            figures.append(
                summarise(
                    f"crl.publish.segments.{label}_s",
                    [s for s, _ in segments],
                    "s",
                    command,
                    segment_note,
                )
            )
            figures.append(
                summarise(
                    f"crl.publish.segments.{label}_rss_mib",
                    [m for _, m in segments],
                    "MiB peak RSS",
                    command,
                    segment_note,
                )
            )
            current_id = f"crl.publish.current.{label}_s"
            current_note = f"revocation.service.publish_crl as it is; {db}"
            if current_skip:
                figures.append(unavailable(current_id, "s", command, current_skip))
                continue
            try:
                first = run_child("current", url, keys, issuer_id, size, current_budget)
            except subprocess.TimeoutExpired:
                current_skip = (
                    f"stopped: publish_crl took more than {current_budget:.0f} s at {label}"
                )
                figures.append(unavailable(current_id, "s", command, current_skip))
                continue
            verify_latest(engine, issuer_id, size)
            current = [first]
            more = runs - 1 if first[0] < 5 else min(1, runs - 1) if first[0] < 20 else 0
            if more:
                current += [
                    run_child("current", url, keys, issuer_id, size, current_budget)
                    for _ in range(more)
                ]
            print(
                f"  current {label}: " + ", ".join(f"{s:.3f} s {m:.0f} MiB" for s, m in current),
                flush=True,
            )
            figures.append(
                summarise(
                    current_id,
                    [s for s, _ in current],
                    "s",
                    command,
                    current_note
                    + ("" if len(current) == runs else f"; {len(current)} run(s), it is slow"),
                )
            )
            figures.append(
                summarise(
                    f"crl.publish.current.{label}_rss_mib",
                    [m for _, m in current],
                    "MiB peak RSS",
                    command,
                    current_note,
                )
            )
            if first[0] * 10 > current_budget:
                current_skip = (
                    f"skipped: publish_crl took {first[0]:.1f} s at {label}, so at least "
                    f"{first[0] * 10:.0f} s for the next size (budget {current_budget:.0f} s)"
                )
        engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite"],
        default=None,
        help="default: postgres if reachable, else sqlite",
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--current-1m-budget",
        type=float,
        default=60.0,
        dest="budget",
        help="seconds one current-path publication may take",
    )
    parser.add_argument("--child", choices=["fast", "segments", "current"])
    parser.add_argument("--url")
    parser.add_argument("--keys")
    parser.add_argument("--issuer", type=int)
    parser.add_argument("--expect", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.keys, args.issuer, args.expect)
        return
    db = args.db or ("postgres" if postgres_available() is None else "sqlite")
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        figures = measure(db, sizes, args.runs, args.budget)
    except Unavailable as exc:
        command = this_command()
        figures = [unavailable(f"crl.publish.{_label(s)}_s", "s", command, str(exc)) for s in sizes]
    print_figures(figures)
    write_results(figures)


if __name__ == "__main__":
    main()

"""CRL publication at 10k, 100k and 1M revoked certificates: seconds and peak RSS.

One publication is ehrca's own ``revocation.service.publish_crl`` on a database
holding N revocations of the issuing CA: take the next CRL number
(``UPDATE ... RETURNING``), stream the entries' DER as stored when each certificate
was revoked (``revocations.entry_der``) into the CRL, sign it with the issuing CA's
P-256 key, store it in ``crls``, prune the history and commit. Each publication runs
in its own subprocess (``--child``), which reports its peak RSS since ``exec``
(``VmHWM``) and its CPU seconds; the key is loaded before the clock starts (the
service keeps it in memory).

Figures: ``crl.publish.{10k,100k,1m}_s`` and ``crl.publish.{10k,100k,1m}_rss_mib`` on
SQLite (the embedded default, where the issue's target applies), the same under
``crl.publish.postgres.*`` on PostgreSQL when it is reachable, the child's CPU
seconds as ``*_cpu_s``, and the same-run baseline ``crl.publish.current.*``: the
same entries read with ``revocation.service.crl_entries`` and built and signed with
cryptography's ``CertificateRevocationListBuilder`` (``revocation.crl.build_crl``,
what libraries do today; quadratic in the entries, so only up to 10k, SQLite).

The revocation rows are loaded in bulk straight into ``revocations`` (``COPY`` on
PostgreSQL, ``executemany`` on SQLite), cumulatively (10k, then 90k more, then 900k
more), each with the ``entry_der`` that the revoke path writes: computed by
``revocation.crl_der.encode_crl_entry``, called once per row. The foreign key to
``certificates`` is not enforced while loading (``session_replication_role =
replica`` on PostgreSQL, no ``foreign_keys`` pragma on SQLite): publication reads only
``revocations``. Every CRL written is checked afterwards (untimed): it parses, its
signature verifies with the issuing CA's key, and up to 100k it lists N entries.

Run: ``.venv/bin/python bench/crl_publish.py`` (about 2 minutes with PostgreSQL;
``--db sqlite`` for SQLite only; ``--sizes 100,1000 --runs 1`` for a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, select, text

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
CHUNK = 100_000
#: The baseline (cryptography's builder) runs up to this size only (it is quadratic).
BUILDER_SIZE = 10_000
#: (id, serial hex, reason, invalidity date, entry DER) of one revocation row.
Row = tuple[int, str, str, dt.datetime | None, bytes]
COLUMNS = (
    "id, certificate_id, issuer_id, serial_number, revocation_date, "
    "revocation_reason, invalidity_date, revoked_by, not_valid_after, entry_der"
)


def _label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


# ----------------------------------------------------------------------------- loading


def _rows(start: int, count: int) -> Iterator[tuple[int, str, str, dt.datetime | None, bytes]]:
    """(id, serial hex, reason, invalidity date, entry DER) for revocation ids
    start+1 .. start+count: random 159-bit serials (ehrca's 20-octet serials), a mix of
    reasons (``unspecified`` without reasonCode), an invalidity date on every tenth;
    the DER from the product's ``encode_crl_entry``."""
    from revocation.crl_der import encode_crl_entry

    invalid_at = REVOKED_AT - dt.timedelta(days=1)
    flags = {reason: x509.ReasonFlags(reason) for reason in REASONS}
    for i in range(start + 1, start + count + 1):
        serial = secrets.randbits(158) | (1 << 158)
        reason = REASONS[i % len(REASONS)]
        invalid = invalid_at if i % 10 == 0 else None
        der = encode_crl_entry(serial, REVOKED_AT, flags[reason], invalid)
        yield i, f"{serial:040x}", reason, invalid, der


def load_revocations(url: str, engine: Engine, issuer_id: int, rows: list[Row]) -> None:
    """Insert ``rows`` (from :func:`_rows`) as revocations of ``issuer_id``."""
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SET session_replication_role = replica")
            with cur.copy(f"COPY revocations ({COLUMNS}) FROM STDIN") as copy:
                for i, serial, reason, invalid, der in rows:
                    copy.write_row(
                        (
                            i,
                            i,
                            issuer_id,
                            serial,
                            REVOKED_AT,
                            reason,
                            invalid,
                            "bench",
                            NOT_AFTER,
                            der,
                        )
                    )
            raw.commit()
        finally:
            raw.close()
        return
    # Times exactly as SQLAlchemy binds them for this column type on SQLite.
    from revocation.models import Revocation

    bind = Revocation.__table__.c.revocation_date.type.bind_processor(engine.dialect)
    assert bind is not None
    revoked_at, not_after = bind(REVOKED_AT), bind(NOT_AFTER)
    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        connection.executemany(
            f"INSERT INTO revocations ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (
                (
                    i,
                    i,
                    issuer_id,
                    serial,
                    revoked_at,
                    reason,
                    bind(invalid),
                    "bench",
                    not_after,
                    der,
                )
                for i, serial, reason, invalid, der in rows
            ),
        )
        connection.commit()
    finally:
        connection.close()


# ------------------------------------------------------------------------------ child


def child(path: str, url: str, keys_dir: str, issuer_id: int, expect: int) -> None:
    """One publication (``publish``: ehrca's ``publish_crl``; ``builder``: the
    cryptography baseline); prints ``{"seconds": ..., "entries": ...}``."""
    from ca.keys import FileKeyStore
    from ca.models import CertificateAuthority
    from db.session import create_db_engine, create_session_factory
    from revocation.crl import build_crl, sign_crl
    from revocation.service import crl_entries, publish_crl

    engine = create_db_engine(url)
    sessions = create_session_factory(engine)
    keystore = FileKeyStore(Path(keys_dir), PASSPHRASE.encode())
    with sessions() as session:
        authority = session.get_one(CertificateAuthority, issuer_id)
        key = keystore.load_key(authority.key_ref)  # cached in the key store from here on
        issuer = x509.load_der_x509_certificate(authority.certificate_der)
        session.rollback()
    now = dt.datetime.now(dt.UTC)
    validity = dt.timedelta(hours=24)
    start, cpu_start = time.perf_counter(), time.process_time()
    with sessions() as session:
        if path == "publish":
            publish_crl(session, keystore, issuer_id, now=now, validity=validity)
        else:
            entries = crl_entries(session, issuer_id, expired_before=now)
            this_update = now.replace(microsecond=0)
            crl = sign_crl(
                build_crl(
                    issuer,
                    entries,
                    crl_number=10**9,
                    this_update=this_update,
                    next_update=this_update + validity,
                ),
                key,
            )
            if len(crl) != expect:
                raise AssertionError(f"builder CRL lists {len(crl)} entries, not {expect}")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    engine.dispose()
    result = {"seconds": seconds, "cpu_seconds": cpu, "rss_mib": peak_rss_mib(), "entries": expect}
    print(json.dumps(result))


def peak_rss_mib() -> float:
    """This process's peak RSS since its ``exec`` (``VmHWM``, Linux), in MiB.

    Not ``ru_maxrss``: Linux carries it across ``exec``, so a child forked from a big
    parent reports at least the parent's RSS at the fork (measured: +95 MiB here).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(
    path: str, url: str, keys_dir: Path, issuer_id: int, expect: int, timeout: float
) -> tuple[float, float, float]:
    """(seconds, peak RSS MiB, CPU seconds) of one publication in a subprocess. The
    CPU seconds are the child's own: the machine is shared, so wall time includes
    waiting for a core (and on PostgreSQL the server's CPU is not in it)."""
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
    if process.returncode != 0:
        raise RuntimeError(f"publication failed: {err.decode(errors='replace')[-2000:]}")
    data = json.loads(out.decode().strip().splitlines()[-1])
    return float(data["seconds"]), float(data["rss_mib"]), float(data["cpu_seconds"])


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


@dataclass
class Target:
    """One database under test: its URL, engine, issuing CA and key directory."""

    db: str
    url: str
    engine: Engine
    issuer_id: int
    keys: Path


def _target(stack: contextlib.ExitStack, db: str) -> Target:
    from db.session import create_db_engine

    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"ehrca-bench-crl-{db}-"))
    url = stack.enter_context(database(db, Path(tmp)))
    instance = init_instance(Path(tmp), url, lint=False)
    engine = create_db_engine(url)
    stack.callback(engine.dispose)
    with engine.connect() as conn:
        issuer_id = conn.execute(
            text("SELECT id FROM certificate_authorities WHERE role = 'issuing' AND active")
        ).scalar_one()
    return Target(db, url, engine, issuer_id, Path(instance.env["EHRCA_KEYS_DIR"]))


def _publications(target: Target, size: int, runs: int, command: str) -> list[Figure]:
    db, label = target.db, _label(size)
    prefix = "crl.publish." if db == "sqlite" else f"crl.publish.{db}."
    note = (
        "revocation.service.publish_crl (read revocations.entry_der + build + sign + "
        f"store + commit), one subprocess per run; {db}"
    )
    args = (target.url, target.keys, target.issuer_id, size, 120)
    samples = [run_child("publish", *args) for _ in range(runs)]
    verify_latest(target.engine, target.issuer_id, size)
    print(
        f"  {db} publish_crl {label}: "
        + ", ".join(f"{s:.3f} s {m:.0f} MiB (CPU {c:.3f} s)" for s, m, c in samples),
        flush=True,
    )
    figures = [
        summarise(f"{prefix}{label}_s", [s for s, _, _ in samples], "s", command, note),
        summarise(
            f"{prefix}{label}_cpu_s",
            [c for _, _, c in samples],
            "s CPU (publishing process)",
            command,
            note,
        ),
        summarise(
            f"{prefix}{label}_rss_mib", [m for _, m, _ in samples], "MiB peak RSS", command, note
        ),
    ]
    if size <= BUILDER_SIZE and db == "sqlite":
        builder = [run_child("builder", *args) for _ in range(runs)]
        print(
            f"  {db} cryptography builder {label}: "
            + ", ".join(f"{s:.3f} s {m:.0f} MiB" for s, m, _ in builder),
            flush=True,
        )
        figures.append(
            summarise(
                f"crl.publish.current.{label}_s",
                [s for s, _, _ in builder],
                "s",
                command,
                "baseline: the same entries read with revocation.service.crl_entries, "
                "built and signed with cryptography's CertificateRevocationListBuilder "
                f"(not stored); {db}",
            )
        )
    return figures


def measure(dbs: list[str], sizes: list[int], runs: int) -> list[Figure]:
    """Load each size cumulatively into a fresh database of each kind in ``dbs`` (the
    rows are generated once and loaded into each) and publish it ``runs`` times."""
    command = this_command()
    figures: list[Figure] = []
    with contextlib.ExitStack() as stack:
        targets = [_target(stack, db) for db in dbs]
        loaded = 0
        for size in sorted(sizes):
            started = time.perf_counter()
            while loaded < size:
                rows = list(_rows(loaded, min(CHUNK, size - loaded)))
                for target in targets:
                    load_revocations(target.url, target.engine, target.issuer_id, rows)
                loaded += len(rows)
            print(
                f"  loaded {size} revocations into {', '.join(dbs)} "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            for target in targets:
                figures += _publications(target, size, runs, command)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db",
        choices=["both", "postgres", "sqlite"],
        default="both",
        help="default: SQLite, then PostgreSQL if reachable",
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=["publish", "builder"])
    parser.add_argument("--url")
    parser.add_argument("--keys")
    parser.add_argument("--issuer", type=int)
    parser.add_argument("--expect", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.keys, args.issuer, args.expect)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    command = this_command()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    figures: list[Figure] = []
    if "postgres" in dbs and (reason := postgres_available()) is not None:
        dbs.remove("postgres")
        figures += [
            unavailable(f"crl.publish.postgres.{_label(s)}_s", "s", command, reason) for s in sizes
        ]
    if dbs:
        try:
            figures += measure(dbs, sizes, args.runs)
        except Unavailable as exc:
            figures += [
                unavailable(f"crl.publish.{_label(s)}_s", "s", command, str(exc)) for s in sizes
            ]
    print_figures(figures)
    write_results(figures)


if __name__ == "__main__":
    main()

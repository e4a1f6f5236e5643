"""Plumbing for the benchmarks that drive a real ``ehrca serve``: databases (SQLite
file, or a fresh PostgreSQL schema dropped afterwards), ``ehrca init`` and ``ehrca
serve --workers N`` as subprocesses in a temporary directory on free 127.0.0.1 ports,
approved applications with download codes made directly through the ORM, and the
``wrk`` load tool with ``bench/replay.lua``.

Every wait is bounded and every process this module starts is stopped (SIGTERM, then
SIGKILL) when its context ends.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, insert, select, text

import db.models  # noqa: F401 - every table, for the ORM's foreign keys
from db.session import create_db_engine, create_session_factory
from issuance.codes import generate_download_code, hash_download_code
from issuance.models import DownloadCode
from registration.models import AccessToken, Application, ApplicationStatus, ServiceLocation

ROOT = Path(__file__).resolve().parents[1]
EHRCA = Path(sys.executable).parent / "ehrca"
HOST = "127.0.0.1"
PG_URL = os.environ.get("EHRCA_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSPHRASE = "bench-passphrase-not-secret"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
REPLAY_LUA = Path(__file__).resolve().parent / "replay.lua"


class Unavailable(Exception):
    """A tool or service the benchmark needs is not available here (the reason)."""


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def ensure_command(command: str, debian_package: str) -> str:
    """The path of ``command``, installing ``debian_package`` with apt-get first when it
    is missing and we are root.

    Raises:
        Unavailable: it is missing and cannot be installed.
    """
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"{command} not found and cannot apt-get install {debian_package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", debian_package],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", debian_package],
    ):
        subprocess.run(args, env=env, capture_output=True, timeout=300, check=False)
        found = shutil.which(command)
        if found:
            return found
    raise Unavailable(f"apt-get install {debian_package} did not provide {command}")


def postgres_available() -> str | None:
    """``None`` when PostgreSQL at :data:`PG_URL` answers, else the reason."""
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} is unreachable: {type(exc).__name__}"
    return None


@contextlib.contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A URL of an empty database: ``sqlite`` (a file in ``directory``) or ``postgres`` (a
    fresh schema, dropped at the end)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'ehrca.db'}"
        return
    reason = postgres_available()
    if reason:
        raise Unavailable(reason)
    schema = f"bench_{secrets.token_hex(5)}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Instance:
    """One initialised ehrca: its directory, environment and database URL."""

    directory: Path
    env: dict[str, str]
    database_url: str

    @property
    def http_port(self) -> int:
        return int(self.env["EHRCA_HTTP_PORT"])

    @property
    def mtls_port(self) -> int:
        return int(self.env["EHRCA_MTLS_PORT"])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"


def make_env(directory: Path, database_url: str, *, lint: bool) -> dict[str, str]:
    """The ``EHRCA_*`` environment of an instance in ``directory`` on free ports."""
    http_port = free_port()
    mtls_port = free_port()
    while mtls_port == http_port:
        mtls_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRCA_")}
    env.update(
        EHRCA_VAR_DIR=str(directory / "var"),
        EHRCA_KEYS_DIR=str(directory / "keys"),
        EHRCA_HTTP_PORT=str(http_port),
        EHRCA_MTLS_PORT=str(mtls_port),
        EHRCA_PUBLIC_BASE_URL=f"http://{HOST}:{http_port}",
        EHRCA_DATABASE_URL=database_url,
        EHRCA_KEY_PASSPHRASE=PASSPHRASE,
        EHRCA_LINT_BEFORE_SIGNING="true" if lint else "false",
    )
    return env


def init_instance(directory: Path, database_url: str, *, lint: bool = True) -> Instance:
    """``ehrca init`` in ``directory`` against ``database_url``."""
    env = make_env(directory, database_url, lint=lint)
    done = subprocess.run(
        [str(EHRCA), "init"],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ehrca init failed: {done.stderr[-2000:]}")
    return Instance(directory, env, database_url)


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1
        status: int = response.status
        response.read()
        return status


@contextlib.contextmanager
def serving(instance: Instance, *, workers: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """``ehrca serve --workers N`` for ``instance`` until the context ends; ready when
    every worker has started both listeners (``Application startup complete`` twice per
    worker in the log) and ``/pki/issuers`` answers."""
    logs = instance.directory / "logs"
    logs.mkdir(exist_ok=True)
    err_path = logs / f"serve-w{workers}-{time.monotonic_ns()}.err"
    with err_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(EHRCA), "serve", "--workers", str(workers)],
            env=instance.env,
            cwd=instance.directory,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"ehrca serve exited ({process.returncode}): "
                        f"{err_path.read_text(errors='replace')[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ehrca serve not ready in {READY_TIMEOUT} s")
                started = err_path.read_text(errors="replace").count("Application startup complete")
                if started >= 2 * workers:
                    try:
                        if _get(f"{instance.base_url}/pki/issuers") == 200:
                            break
                    except (urllib.error.URLError, ConnectionError, TimeoutError):
                        pass
                time.sleep(0.1)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its live descendants (from /proc):
    what the server spent, whatever else runs on the machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    tree = {pid}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                changed = True
    return sum(times.get(p, 0.0) for p in tree)


# ----------------------------------------------------------------------- provisioning


@dataclass(frozen=True, slots=True)
class Collectable:
    """One service location ready to collect: where, with which token and code."""

    reference: str
    number: int
    token: str
    code: str

    @property
    def path(self) -> str:
        return f"/api/v1/applications/{self.reference}/service-locations/{self.number}/certificate"


def _reference(index: int) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    digits = []
    value = index + secrets.randbelow(2**30) * 100_000
    for _ in range(8):
        value, digit = divmod(value, 32)
        digits.append(alphabet[digit])
    return "HCP-" + "".join(reversed(digits))


def provision(database_url: str, *, locations: int, per_application: int = 20) -> list[Collectable]:
    """Approved applications with ``locations`` service locations in all (at most
    ``per_application`` each), one unused download code per location and one bearer
    token per application, inserted in bulk through the ORM (the API caps a PUT at 200
    locations and hashes every password with Argon2, neither of which is under test)."""
    now = dt.datetime.now(dt.UTC)
    engine = create_db_engine(database_url)
    sessions = create_session_factory(engine)
    applications = (locations + per_application - 1) // per_application
    refs: set[str] = set()
    while len(refs) < applications:
        refs.add(_reference(len(refs)))
    references = sorted(refs)
    tokens = {ref: secrets.token_urlsafe(32) for ref in references}
    try:
        with sessions() as session:
            app_ids = list(
                session.scalars(
                    insert(Application).returning(Application.id, sort_by_parameter_order=True),
                    [
                        {
                            "reference": ref,
                            "password_hash": "$argon2id$bench-not-a-hash",
                            "contact_email": "bench@example.org",
                            "language": "en",
                            "status": ApplicationStatus.APPROVED,
                            "provider_type": "medical_group",
                            "name_en": "Harbour Family Medicine Group Limited",
                            "name_zh": "海港家庭醫學集團有限公司",
                            "business_registration_number": "12345678",
                            "correspondence_address": "12/F, 88 Nathan Road",
                            "phone": "23456789",
                            "email": "bench@example.org",
                            "created_at": now,
                            "submitted_at": now,
                            "decided_at": now,
                            "accepted_at": now,
                        }
                        for ref in references
                    ],
                )
            )
            rows = []
            owners = []
            for index in range(locations):
                app_index, number = divmod(index, per_application)
                rows.append(
                    {
                        "application_id": app_ids[app_index],
                        "number": number + 1,
                        "name_en": f"Clinic {number + 1}",
                        "name_zh": f"診所 {number + 1}",
                        "address": "12/F, 88 Nathan Road",
                        "district": "Yau Tsim Mong",
                        "phone": "23456789",
                        "opening_status": "open",
                    }
                )
                owners.append((references[app_index], number + 1))
            location_ids = list(
                session.scalars(
                    insert(ServiceLocation).returning(
                        ServiceLocation.id, sort_by_parameter_order=True
                    ),
                    rows,
                )
            )
            codes = [generate_download_code() for _ in range(locations)]
            session.execute(
                insert(DownloadCode),
                [
                    {
                        "service_location_id": loc_id,
                        "code_sha256": hash_download_code(code),
                        "created_at": now,
                        "expires_at": now + dt.timedelta(days=60),
                    }
                    for loc_id, code in zip(location_ids, codes, strict=True)
                ],
            )
            session.execute(
                insert(AccessToken),
                [
                    {
                        "token_sha256": hashlib.sha256(tokens[ref].encode()).hexdigest(),
                        "subject_kind": "applicant",
                        "subject": ref,
                        "role": "applicant",
                        "expires_at": now + dt.timedelta(days=1),
                    }
                    for ref in references
                ],
            )
            session.commit()
            # Sanity: the ORM agrees with what was inserted.
            assert session.scalar(select(ServiceLocation.id).limit(1)) is not None
    finally:
        engine.dispose()
    return [
        Collectable(ref, number, tokens[ref], code)
        for (ref, number), code in zip(owners, codes, strict=True)
    ]


def make_csrs(count: int) -> list[str]:
    """``count`` PKCS#10 PEMs, each for a fresh P-256 key."""
    result = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"bench {i}")]))
            .sign(key, hashes.SHA256())
        )
        result.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return result


@dataclass(frozen=True, slots=True)
class Request:
    """One request for ``bench/replay.lua`` (binary bodies go base64-encoded)."""

    method: str
    target: str
    authorization: str = ""
    content_type: str = ""
    body: str | bytes = ""

    def line(self) -> str:
        body = self.body
        if isinstance(body, bytes):
            body = "b64:" + base64.b64encode(body).decode("ascii")
        elif "\t" in body or "\n" in body or body.startswith("b64:"):
            raise ValueError("text bodies must be one line without tabs")
        return "\t".join((self.method, self.target, self.authorization, self.content_type, body))


def write_requests(path: Path, requests: list[Request]) -> None:
    """The request file of ``bench/replay.lua``."""
    with path.open("w", encoding="utf-8") as handle:
        for request in requests:
            handle.write(request.line() + "\n")


def collect_requests(items: list[Collectable], csrs: list[str]) -> list[Request]:
    """One CSR collection request per item (CSRs taken round-robin)."""
    return [
        Request(
            "POST",
            item.path,
            f"Bearer {item.token}",
            "application/json",
            json.dumps({"download_code": item.code, "csr": csrs[i % len(csrs)]}),
        )
        for i, item in enumerate(items)
    ]


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What ``bench/replay.lua`` reported for one wrk run."""

    seconds: float
    ok: int
    bad: int
    last_bad_status: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def run_wrk(
    base_url: str,
    requests_file: Path,
    *,
    expected_status: int,
    threads: int = 2,
    connections: int = 16,
    seconds: float = 5.0,
) -> WrkResult:
    """Replay ``requests_file`` with wrk (bounded by the file and by ``seconds``)."""
    wrk = ensure_command("wrk", "wrk")
    done = subprocess.run(
        [
            wrk,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(REPLAY_LUA),
            base_url,
            "--",
            str(requests_file),
            str(expected_status),
            str(threads),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line.removeprefix("WRKJSON "))
            return WrkResult(
                seconds=data["duration_us"] / 1e6,
                ok=data["ok"],
                bad=data["bad"],
                last_bad_status=data["last_bad_status"],
                socket_errors=data["socket_errors"],
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
            )
    raise RuntimeError(f"wrk printed no result: {done.stdout[-1000:]} {done.stderr[-1000:]}")

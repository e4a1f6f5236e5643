"""Smoke test of the real ``ehrca`` command line in subprocesses.

``ehrca init`` (and its refusal to overwrite), ``ehrca officer add`` and
``ehrca serve`` run as the venv's console script in a temporary directory, with
the ``EHRCA_*`` environment pointing into it and free 127.0.0.1 ports. The
served HTTP API is reached with :mod:`urllib`, the mTLS port with :mod:`ssl`.
SQLite only: the CLI is exercised, not the database. Every wait is bounded and
every process is killed in a ``finally``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.server import bind_socket
from api.services import build_services
from api.settings import Settings
from tests.helpers import OFFICER_PASSWORD
from tests.revocation.support import issue_client

EHRCA = Path(sys.executable).parent / "ehrca"
HOST = "127.0.0.1"
COMMAND_TIMEOUT = 60.0  # seconds for one short CLI command (a bound, not an expectation)
READY_TIMEOUT = 20.0  # seconds until `ehrca serve` answers
WORKERS_READY_TIMEOUT = 90.0  # seconds until two spawned workers answer on a busy machine
STOP_TIMEOUT = 10.0  # seconds from SIGTERM to exit
KEY_FILES = ("ehrca-root-1.key.pem", "ehrca-issuing-1.key.pem", "mtls-server.key.pem")


def _free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of every ``ehrca`` run: no inherited ``EHRCA_*``, all data in tmp."""
    http_port = _free_port()
    mtls_port = _free_port()
    while mtls_port == http_port:
        mtls_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EHRCA_")}
    env.update(
        EHRCA_VAR_DIR=str(tmp_path / "var"),
        EHRCA_KEYS_DIR=str(tmp_path / "keys"),
        EHRCA_HTTP_HOST=HOST,
        EHRCA_HTTP_PORT=str(http_port),
        EHRCA_MTLS_HOST=HOST,
        EHRCA_MTLS_PORT=str(mtls_port),
        EHRCA_PUBLIC_BASE_URL=f"http://{HOST}:{http_port}",
    )
    return env


def _ehrca(
    env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EHRCA), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


@pytest.fixture
def initialised(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``ehrca init``, checked: exit 0, encrypted 0600 key files, the passphrase warning."""
    first = _ehrca(cli_env, tmp_path, "init")
    assert first.returncode == 0, first.stderr
    assert "root CA:" in first.stdout and "issuing CA:" in first.stdout
    keys = Path(cli_env["EHRCA_KEYS_DIR"])
    assert f"WARNING: generated a random key passphrase in {keys}/passphrase.generated" in (
        first.stderr
    )
    for name in (*KEY_FILES, "passphrase.generated"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600, name
    for name in KEY_FILES:
        assert (keys / name).read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    return cli_env


# ----------------------------------------------------------------------------- serve


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http://127.0.0.1
        status: int = response.status
        return status, response.read()


def _wait_until_ready(
    process: subprocess.Popen[bytes], url: str, timeout: float = READY_TIMEOUT
) -> list[dict[str, Any]]:
    """Poll ``url`` until it answers 200 (bounded by ``timeout`` seconds); return its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ehrca serve exited early ({process.returncode})"
        try:
            status, body = _get(url, timeout=1.0)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
            continue
        assert status == 200
        issuers: list[dict[str, Any]] = json.loads(body)
        return issuers
    raise AssertionError(f"ehrca serve did not answer {url} within {timeout} s")


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``ehrca serve [args]`` as a subprocess (output to files in ``cwd/logs``); killed
    (with its worker processes) at the end if still running."""
    log_dir = cwd / "logs"
    log_dir.mkdir()
    with (
        (log_dir / "serve.out").open("wb") as stdout,
        (log_dir / "serve.err").open("wb") as stderr,
    ):
        process = subprocess.Popen(
            [str(EHRCA), "serve", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            for child in _children(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            process.kill()
        process.wait(STOP_TIMEOUT)


def _children(pid: int) -> list[int]:
    """The child process ids of ``pid`` (Linux ``/proc/PID/task/PID/children``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def test_init_officer_serve_and_stop(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    http_base = env["EHRCA_PUBLIC_BASE_URL"]
    mtls_port = int(env["EHRCA_MTLS_PORT"])

    again = _ehrca(env, tmp_path, "init")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "refusing to overwrite" in again.stderr
    exist_ok = _ehrca(env, tmp_path, "init", "--exist-ok")
    assert exist_ok.returncode == 0, exist_ok.stderr
    assert "already initialised" in exist_ok.stdout
    added = _ehrca(
        env,
        tmp_path,
        *("officer", "add", "sec-one", "--role", "security_officer"),
        stdin=OFFICER_PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "officer sec-one (security_officer) added" in added.stdout

    with serving(env, tmp_path) as server:
        issuers = _wait_until_ready(server, f"{http_base}/pki/issuers")
        assert [issuer["role"] for issuer in issuers] == ["root", "issuing"]
        assert all(issuer["crl_url"].startswith(f"{http_base}/pki/crl/") for issuer in issuers)

        # The officer added on the command line can log in to the served API.
        form = urllib.parse.urlencode(
            {"username": "sec-one", "password": OFFICER_PASSWORD}
        ).encode()
        login = urllib.request.Request(f"{http_base}/api/v1/auth/token", data=form)  # noqa: S310
        with urllib.request.urlopen(login, timeout=5.0) as response:  # noqa: S310 - http://127.0.0.1
            assert response.status == 200
            assert json.loads(response.read())["access_token"]

        # The mTLS port: the server certificate chains to the served root (and names
        # 127.0.0.1), and a client without a certificate is refused at the handshake.
        status, root_der = _get(f"{http_base}/pki/ca/{issuers[0]['name']}.crt")
        assert status == 200
        root = x509.load_der_x509_certificate(root_der)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(cadata=root.public_bytes(serialization.Encoding.PEM).decode())
        with (
            socket.create_connection((HOST, mtls_port), timeout=5.0) as raw,
            pytest.raises(ssl.SSLError) as refused,
            client.wrap_socket(raw, server_hostname=HOST, suppress_ragged_eofs=False) as tls,
        ):
            assert tls.version() == "TLSv1.3"
            tls.recv(1)
        assert refused.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED", refused.value

        # SIGTERM stops both listeners within the bound.
        server.send_signal(signal.SIGTERM)
        try:
            returncode = server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ehrca serve did not exit within {STOP_TIMEOUT} s of SIGTERM")
        stderr = (tmp_path / "logs" / "serve.err").read_text()
        # A clean exit: api.server turns the SIGTERM uvicorn re-raises into SystemExit(0).
        assert returncode == 0, stderr
        assert stderr.count("Finished server process") == 2, stderr  # HTTP and mTLS
        assert "Traceback" not in stderr, stderr


# ----------------------------------------------------------------------------- RSA


def test_init_with_rsa_key_types(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = _ehrca(
        cli_env, tmp_path, "init", "--root-key-type", "rsa-3072", "--issuing-key-type", "rsa-2048"
    )
    assert result.returncode == 0, result.stderr
    assert "(rsa-3072)" in result.stdout and "(rsa-2048)" in result.stdout

    database = Path(cli_env["EHRCA_VAR_DIR"]) / "ehrca.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = dict(connection.execute("SELECT role, certificate_der FROM certificate_authorities"))
    root = x509.load_der_x509_certificate(rows["root"])
    issuing = x509.load_der_x509_certificate(rows["issuing"])
    for certificate, bits in ((root, 3072), (issuing, 2048)):
        public_key = certificate.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        assert public_key.key_size == bits
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)

    keys = Path(cli_env["EHRCA_KEYS_DIR"])
    passphrase = (keys / "passphrase.generated").read_bytes().strip()
    for name, certificate in (("ehrca-root-1", root), ("ehrca-issuing-1", issuing)):
        key = serialization.load_pem_private_key(
            (keys / f"{name}.key.pem").read_bytes(), password=passphrase
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.public_key() == certificate.public_key()


# ----------------------------------------------------------------------------- workers


def _server_socket_inode(server_port: int, client_port: int) -> int:
    """The inode of the accepted server-side socket of the 127.0.0.1 connection from
    ``client_port`` to ``server_port`` (``/proc/net/tcp``), 0 while not yet accepted."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if (
            int(local.split(":")[1], 16) == server_port
            and int(remote.split(":")[1], 16) == client_port
            and fields[3] == "01"  # ESTABLISHED
        ):
            return inode
    return 0


def _owner(inode: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the socket ``inode`` open."""
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return pid
    return None


def _connect_to(worker: int, port: int, workers: list[int]) -> socket.socket:
    """A TCP connection to ``port`` that the kernel gave to the process ``worker``
    (SO_REUSEPORT spreads connections; try new ones until one lands there)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        raw = socket.create_connection((HOST, port), timeout=5.0)
        inode = 0
        while inode == 0 and time.monotonic() < deadline:
            inode = _server_socket_inode(port, raw.getsockname()[1])
            if inode == 0:
                time.sleep(0.005)
        owner = _owner(inode, workers) if inode else None
        if owner == worker:
            return raw
        raw.close()
    raise AssertionError(f"no connection landed on worker {worker} within {READY_TIMEOUT} s")


def _whoami(connection: http.client.HTTPSConnection) -> int:
    connection.request("GET", "/mtls/whoami")
    response = connection.getresponse()
    response.read()
    return response.status


def _https_on(
    raw: socket.socket, context: ssl.SSLContext, port: int
) -> http.client.HTTPSConnection:
    connection = http.client.HTTPSConnection(HOST, port, context=context, timeout=5.0)
    connection.sock = context.wrap_socket(raw, server_hostname=HOST)
    return connection


def test_two_workers_tell_each_other_of_a_revocation(
    initialised: dict[str, str], tmp_path: Path
) -> None:
    """``ehrca serve --workers 2`` with the database poll at one hour: a revocation
    committed by whichever worker answers the revoke call makes BOTH workers refuse a
    new handshake of that certificate in the TLS layer (the sibling's SSL context was
    swapped on a notification), and garbage datagrams do not disturb them. On SIGTERM
    every socket file is gone."""
    env = {**initialised, "EHRCA_STATUS_POLL_SECONDS": "3600"}
    http_base = env["EHRCA_PUBLIC_BASE_URL"]
    mtls_port = int(env["EHRCA_MTLS_PORT"])
    notify_dir = Path(env["EHRCA_VAR_DIR"]) / "run" / "notify"
    added = _ehrca(
        env, tmp_path, "officer", "add", "sam", "--role", "security_officer",
        stdin=OFFICER_PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    local = build_services(
        Settings(
            var_dir=Path(env["EHRCA_VAR_DIR"]), keys_dir=Path(env["EHRCA_KEYS_DIR"]), _env_file=None
        )
    )
    try:
        issued = issue_client(local)
    finally:
        local.dispose()
    pem = serialization.Encoding.PEM
    (tmp_path / "client.pem").write_bytes(issued.certificate.public_bytes(pem))
    (tmp_path / "client.key").write_bytes(
        issued.key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    with serving(env, tmp_path, "--workers", "2") as server:
        issuers = _wait_until_ready(server, f"{http_base}/pki/issuers", WORKERS_READY_TIMEOUT)
        deadline = time.monotonic() + WORKERS_READY_TIMEOUT
        err = tmp_path / "logs" / "serve.err"
        while (
            len(os.listdir(notify_dir)) < 2
            or err.read_text().count("Application startup complete") < 4
        ):
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        names = sorted(os.listdir(notify_dir))
        workers = sorted(int(name.split("-")[0]) for name in names)
        assert len(workers) == 2 and set(workers) <= set(_children(server.pid))
        for name in names:
            assert stat.S_IMODE((notify_dir / name).stat().st_mode) == 0o600
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
                for junk in (b"", b"junk", b"\x00" * 300, b"ehrca-notify/1 revocation!"):
                    raw.sendto(junk, str(notify_dir / name))

        _, root_der = _get(f"{http_base}/pki/ca/{issuers[0]['name']}.crt")
        root = x509.load_der_x509_certificate(root_der)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=root.public_bytes(pem).decode())
        context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
        keepalive = {
            worker: _https_on(_connect_to(worker, mtls_port, workers), context, mtls_port)
            for worker in workers
        }
        assert {worker: _whoami(c) for worker, c in keepalive.items()} == dict.fromkeys(
            workers, 200
        )

        form = urllib.parse.urlencode({"username": "sam", "password": OFFICER_PASSWORD}).encode()
        login = urllib.request.Request(f"{http_base}/api/v1/auth/token", data=form)  # noqa: S310
        with urllib.request.urlopen(login, timeout=5.0) as response:  # noqa: S310 - http://127.0.0.1
            token = json.loads(response.read())["access_token"]
        revoke = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
            f"{http_base}/api/v1/officer/certificates/{issued.serial_hex}/revoke",
            data=json.dumps({"reason": "keyCompromise"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(revoke, timeout=5.0) as response:  # noqa: S310 - http://127.0.0.1
            assert response.status == 200

        # Connections opened before: refused by the app on both workers.
        assert {worker: _whoami(c) for worker, c in keepalive.items()} == dict.fromkeys(
            workers, 403
        )
        for connection in keepalive.values():
            connection.close()
        # New handshakes: refused in the TLS layer by both workers. The poll is an hour
        # away, so the sibling can only have its new CRL from a notification.
        refused: dict[int, str] = {}
        for worker in workers:
            deadline = time.monotonic() + READY_TIMEOUT
            while worker not in refused:
                assert time.monotonic() < deadline, f"worker {worker} still accepts: {refused}"
                raw = _connect_to(worker, mtls_port, workers)
                try:
                    with context.wrap_socket(raw, server_hostname=HOST) as tls:
                        tls.sendall(b"GET /mtls/whoami HTTP/1.1\r\nHost: x\r\n\r\n")
                        tls.recv(1)
                except ssl.SSLError as exc:
                    refused[worker] = str(exc.reason)
                finally:
                    raw.close()
                if worker not in refused:
                    time.sleep(0.01)
        assert refused == dict.fromkeys(workers, "SSLV3_ALERT_CERTIFICATE_REVOKED")

        server.send_signal(signal.SIGTERM)
        try:
            returncode = server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ehrca serve did not exit within {STOP_TIMEOUT} s of SIGTERM")
        stderr = err.read_text()
        assert returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        assert stderr.count("ignored a datagram that is not a notification") == 2, stderr
    assert os.listdir(notify_dir) == []


def test_bind_socket_sets_tcp_nodelay_on_accepted_connections() -> None:
    """Without TCP_NODELAY a response written in two pieces waits for the client's
    delayed ACK (api.server.bind_socket)."""
    listener = bind_socket(HOST, 0, reuse_port=True)
    with listener, socket.create_connection(listener.getsockname()[:2], timeout=5.0):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.proto == socket.IPPROTO_TCP  # asyncio's _set_nodelay applies too
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1

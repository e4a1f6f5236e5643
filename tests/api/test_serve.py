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

from tests.helpers import OFFICER_PASSWORD

EHRCA = Path(sys.executable).parent / "ehrca"
HOST = "127.0.0.1"
COMMAND_TIMEOUT = 60.0  # seconds for one short CLI command (a bound, not an expectation)
READY_TIMEOUT = 20.0  # seconds until `ehrca serve` answers
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


def _wait_until_ready(process: subprocess.Popen[bytes], url: str) -> list[dict[str, Any]]:
    """Poll ``url`` until it answers 200 (bounded by :data:`READY_TIMEOUT`); return its JSON."""
    deadline = time.monotonic() + READY_TIMEOUT
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
    raise AssertionError(f"ehrca serve did not answer {url} within {READY_TIMEOUT} s")


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``ehrca serve`` as a subprocess (output to files in ``cwd/logs``); killed at the
    end if still running."""
    log_dir = cwd / "logs"
    log_dir.mkdir()
    with (
        (log_dir / "serve.out").open("wb") as stdout,
        (log_dir / "serve.err").open("wb") as stderr,
    ):
        process = subprocess.Popen(
            [str(EHRCA), "serve"],
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
            process.kill()
        process.wait(STOP_TIMEOUT)


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

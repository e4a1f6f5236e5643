"""Revocation-to-refusal: how long after the revoke API answers does every relying
party see the revocation?

For each run a fresh secure connection certificate is collected through the API (CSR
path), a keep-alive mTLS connection is opened with it and answers ``/mtls/whoami``,
then a security officer revokes it. From the moment the revoke response arrives, four
probes run concurrently, each polling every 5 ms (each bounded by 5 s):

- ``mtls_new``: a new mTLS connection is refused (handshake alert from the CRL in the
  TLS layer, or 403 from the app's revocation status check);
- ``mtls_keepalive``: the connection opened before the revocation gets 403;
- ``crl``: the serial is on the CRL served at the distribution point;
- ``ocsp``: the OCSP responder (POST) answers ``revoked``.

It runs ``ehrca init`` and ``ehrca serve --workers N`` (default 2: with SO_REUSEPORT a
new connection may land on the worker that did not revoke, which learns of it by
polling the revocation version every 0.5 s) in a temporary directory on free
127.0.0.1 ports, prints a table of medians (with min and max) over the runs and
writes ``bench/results/revocation.json`` (and merges the medians into
``bench/results/latest.json`` / ``latest.md``).

    .venv/bin/python bench/revocation.py [--runs 10] [--workers 2] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from bench.common import Figure, results_dir, summarise, write_results
from bench.service import (
    EHRCA,
    HOST,
    Collectable,
    Instance,
    database,
    init_instance,
    provision,
    serving,
)

PROBE_TIMEOUT = 5.0  # seconds per probe
PROBE_INTERVAL = 0.005  # seconds between two attempts
OFFICER = "bench-security"
OFFICER_PASSWORD = "bench-security-password"  # a throwaway officer of a temporary CA
PROBES = ("mtls_new", "mtls_keepalive", "crl", "ocsp")
DESCRIPTIONS = {
    "mtls_new": "new mTLS connection refused",
    "mtls_keepalive": "keep-alive mTLS connection refused",
    "crl": "serial on the served CRL",
    "ocsp": "OCSP answers revoked",
}


def _request(
    instance: Instance,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 - 127.0.0.1 only
        instance.base_url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def add_officer(instance: Instance) -> None:
    """Create the security officer (``ehrca officer add``, password on stdin)."""
    done = subprocess.run(
        [str(EHRCA), "officer", "add", OFFICER, "--role", "security_officer"],
        input=OFFICER_PASSWORD + "\n",
        env=instance.env,
        cwd=instance.directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ehrca officer add failed: {done.stderr[-1000:]}")


def login(instance: Instance) -> str:
    status, body = _request(
        instance,
        "POST",
        "/api/v1/auth/token",
        body=f"username={OFFICER}&password={OFFICER_PASSWORD}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if status != 200:
        raise RuntimeError(f"officer login failed: {status}")
    token: str = json.loads(body)["access_token"]
    return token


class Client:
    """A collected certificate, its key and the files an mTLS client needs."""

    def __init__(self, directory: Path, instance: Instance, collectable: Collectable) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench")]))
            .sign(key, hashes.SHA256())
        )
        status, body = _request(
            instance,
            "POST",
            collectable.path,
            body=json.dumps(
                {
                    "download_code": collectable.code,
                    "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
                }
            ).encode(),
            headers={
                "Authorization": f"Bearer {collectable.token}",
                "Content-Type": "application/json",
            },
        )
        if status != 201:
            raise RuntimeError(f"collection failed: {status} {body[:300]!r}")
        data = json.loads(body)
        self.serial_hex: str = data["serial_number"]
        self.certificate = x509.load_pem_x509_certificate(data["certificate_pem"].encode())
        chain = x509.load_pem_x509_certificates(data["chain_pem"].encode())
        self.issuer, root = chain[0], chain[-1]
        self.cert_path = directory / f"{self.serial_hex}.pem"
        self.cert_path.write_text(data["certificate_pem"] + data["chain_pem"])
        self.key_path = directory / f"{self.serial_hex}.key"
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.key_path.chmod(0o600)
        root_path = directory / "root.pem"
        root_path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.load_verify_locations(root_path)
        self.context.load_cert_chain(self.cert_path, self.key_path)
        self.ocsp_request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(self.certificate, self.issuer, hashes.SHA1())  # noqa: S303
            .build()
            .public_bytes(serialization.Encoding.DER)
        )

    def connect(self, instance: Instance) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            HOST, instance.mtls_port, context=self.context, timeout=PROBE_TIMEOUT
        )


def whoami(connection: http.client.HTTPSConnection) -> int | None:
    """The status of ``GET /mtls/whoami`` on ``connection``, ``None`` if TLS refused."""
    try:
        connection.request("GET", "/mtls/whoami")
        response = connection.getresponse()
        response.read()
        return response.status
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return None


def probe(check: Callable[[], bool], start: float) -> float | None:
    """Seconds from ``start`` until ``check()`` holds (``None`` if not within the
    bound)."""
    deadline = start + PROBE_TIMEOUT
    while time.perf_counter() < deadline:
        if check():
            return time.perf_counter() - start
        time.sleep(PROBE_INTERVAL)
    return None


def one_run(instance: Instance, token: str, client: Client) -> dict[str, float | None]:
    """Revoke ``client``'s certificate and time the four probes (seconds)."""
    keepalive = client.connect(instance)
    if whoami(keepalive) != 200:
        raise RuntimeError("the fresh certificate was not accepted over mTLS")

    def new_connection_refused() -> bool:
        connection = client.connect(instance)
        try:
            return whoami(connection) != 200
        finally:
            connection.close()

    def keepalive_refused() -> bool:
        return whoami(keepalive) == 403

    def on_crl() -> bool:
        status, body = _request(instance, "GET", "/pki/crl/ehrca-issuing-1.crl")
        if status != 200:
            return False
        crl = x509.load_der_x509_crl(body)
        return (
            crl.get_revoked_certificate_by_serial_number(client.certificate.serial_number)
            is not None
        )

    def ocsp_revoked() -> bool:
        status, body = _request(
            instance,
            "POST",
            "/pki/ocsp/ehrca-issuing-1",
            body=client.ocsp_request,
            headers={"Content-Type": "application/ocsp-request"},
        )
        if status != 200:
            return False
        response = ocsp.load_der_ocsp_response(body)
        return (
            response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
            and response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        )

    checks = {
        "mtls_new": new_connection_refused,
        "mtls_keepalive": keepalive_refused,
        "crl": on_crl,
        "ocsp": ocsp_revoked,
    }
    status, body = _request(
        instance,
        "POST",
        f"/api/v1/officer/certificates/{client.serial_hex}/revoke",
        body=json.dumps({"reason": "keyCompromise"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    start = time.perf_counter()
    if status != 200:
        raise RuntimeError(f"revocation failed: {status} {body[:300]!r}")
    results: dict[str, float | None] = {}
    threads = [
        threading.Thread(target=lambda n=name, c=check: results.__setitem__(n, probe(c, start)))
        for name, check in checks.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROBE_TIMEOUT * 2)
    keepalive.close()
    return results


def _line(result: dict[str, float | None]) -> str:
    parts = []
    for name in PROBES:
        value = result.get(name)
        parts.append(f"{name} " + ("-" if value is None else f"{value * 1000:.1f} ms"))
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="revocations to time (1-100)")
    parser.add_argument("--workers", type=int, default=2, help="ehrca serve workers (1-8)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args(argv)
    runs = max(1, min(100, args.runs))
    workers = max(1, min(8, args.workers))
    command = (
        f".venv/bin/python bench/revocation.py --runs {runs} --workers {workers} "
        f"--database {args.database}"
    )
    samples: dict[str, list[float]] = {name: [] for name in PROBES}
    missed: dict[str, int] = dict.fromkeys(PROBES, 0)
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-revocation-") as tmp:
        directory = Path(tmp)
        with database(args.database, directory) as url:
            instance = init_instance(directory, url)
            add_officer(instance)
            collectables = provision(url, locations=runs)
            with serving(instance, workers=workers):
                token = login(instance)
                for index, collectable in enumerate(collectables, 1):
                    client = Client(directory, instance, collectable)
                    result = one_run(instance, token, client)
                    for name in PROBES:
                        value = result.get(name)
                        if value is None:
                            missed[name] += 1
                        else:
                            samples[name].append(value * 1000)
                    print(f"run {index}/{runs}: {_line(result)}", file=sys.stderr)
    figures: list[Figure] = []
    print(f"\nrevocation to refusal, {runs} runs, {workers} worker(s), {args.database}")
    print(f"{'after the revoke response':38} {'median':>9} {'min':>9} {'max':>9}  missed")
    for name in PROBES:
        values = samples[name]
        if values:
            figure = summarise(
                f"revocation.{name}_ms",
                values,
                "ms",
                command,
                note=f"{DESCRIPTIONS[name]}; {missed[name]} of {runs} not within 5 s"
                if missed[name]
                else DESCRIPTIONS[name],
            )
            figures.append(figure)
            print(
                f"{DESCRIPTIONS[name]:38} {statistics.median(values):8.1f}  {min(values):8.1f}"
                f"  {max(values):8.1f}  {missed[name]}"
            )
        else:
            print(f"{DESCRIPTIONS[name]:38} {'-':>9} {'-':>9} {'-':>9}  {missed[name]}")
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "revocation.json").write_text(
        json.dumps(
            {
                "command": command,
                "runs": runs,
                "workers": workers,
                "database": args.database,
                "unit": "ms",
                "probe_timeout_s": PROBE_TIMEOUT,
                "figures": {
                    name: {
                        "description": DESCRIPTIONS[name],
                        "median": statistics.median(samples[name]) if samples[name] else None,
                        "min": min(samples[name]) if samples[name] else None,
                        "max": max(samples[name]) if samples[name] else None,
                        "missed": missed[name],
                        "samples": [round(v, 3) for v in samples[name]],
                    }
                    for name in PROBES
                },
            },
            indent=2,
        )
        + "\n"
    )
    with contextlib.suppress(OSError):
        write_results(figures)
    print(f"\nwritten: {out / 'revocation.json'}")
    return 0 if all(samples[name] for name in PROBES) else 1


if __name__ == "__main__":
    sys.exit(main())

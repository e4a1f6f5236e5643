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
new connection may land on the worker that did not revoke, which learns of it from the
sibling notification of ``api.notify``, or, with ``--worker-notify off``, by polling
every 0.5 s) in a temporary directory on free 127.0.0.1 ports, prints a table of
medians (with min and max) over the runs and writes ``bench/results/revocation.json``
(and merges the medians into ``bench/results/latest.json`` / ``latest.md``).

Each figure includes the probe's own round trip (a TLS handshake, an HTTP request)
while the four probes compete for the CPU, so a revocation visible before the first
attempt still shows as a few milliseconds. ``revocation.json`` therefore also records,
per probe, how many attempts each run took (1: the very first request after the
response was refused), and for ``mtls_new`` whether the refusal came from the TLS
layer (the CRL in the worker's SSL context) or from the app (403).

    .venv/bin/python bench/revocation.py [--runs 10] [--workers 2] [--database sqlite|postgres]
        [--worker-notify on|off]

``--worker-notify off`` (poll only, for comparison) writes
``bench/results/revocation-notify-off.json`` and leaves ``latest.json`` alone.
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
from dataclasses import dataclass, field
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


def probe(check: Callable[[], bool], start: float) -> tuple[float | None, int]:
    """Seconds from ``start`` until ``check()`` holds (``None`` if not within the
    bound), and the number of attempts made."""
    deadline = start + PROBE_TIMEOUT
    attempts = 0
    while time.perf_counter() < deadline:
        attempts += 1
        if check():
            return time.perf_counter() - start, attempts
        time.sleep(PROBE_INTERVAL)
    return None, attempts


@dataclass
class RunResult:
    """One revocation: seconds per probe (``None``: not within the bound), attempts per
    probe, and how the new connection was refused (``tls``, ``http_403``, or ``None``)."""

    seconds: dict[str, float | None] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    new_refused_by: str | None = None
    baseline: dict[str, float] = field(default_factory=dict)


def _concurrently(checks: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Run each check once, all at the same time; seconds each took."""
    durations: dict[str, float] = {}

    def run(name: str, check: Callable[[], object]) -> None:
        began = time.perf_counter()
        check()
        durations[name] = time.perf_counter() - began

    threads = [threading.Thread(target=run, args=item) for item in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROBE_TIMEOUT * 2)
    return durations


def one_run(instance: Instance, token: str, client: Client) -> RunResult:
    """Revoke ``client``'s certificate and time the four probes (seconds)."""
    keepalive = client.connect(instance)
    if whoami(keepalive) != 200:
        raise RuntimeError("the fresh certificate was not accepted over mTLS")
    result = RunResult()

    def new_connection_refused() -> bool:
        connection = client.connect(instance)
        try:
            status = whoami(connection)
        finally:
            connection.close()
        if status == 200:
            return False
        result.new_refused_by = "tls" if status is None else f"http_{status}"
        return True

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
    # The probes' own cost: one round of the same four attempts, concurrently, before the
    # revocation (each still answers "not revoked").
    result.baseline = _concurrently(dict(checks))
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

    def run_probe(name: str, check: Callable[[], bool]) -> None:
        result.seconds[name], result.attempts[name] = probe(check, start)

    threads = [
        threading.Thread(target=run_probe, args=(name, check)) for name, check in checks.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROBE_TIMEOUT * 2)
    keepalive.close()
    return result


def _line(result: RunResult) -> str:
    parts = []
    for name in PROBES:
        value = result.seconds.get(name)
        parts.append(
            f"{name} "
            + ("-" if value is None else f"{value * 1000:.1f} ms")
            + f" ({result.attempts.get(name, 0)})"
        )
    return ", ".join(parts) + f"; new connection refused by {result.new_refused_by}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="revocations to time (1-100)")
    parser.add_argument("--workers", type=int, default=2, help="ehrca serve workers (1-8)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--worker-notify",
        choices=["on", "off"],
        default="on",
        help="sibling notifications between workers (EHRCA_WORKER_NOTIFY; off: poll only)",
    )
    args = parser.parse_args(argv)
    runs = max(1, min(100, args.runs))
    workers = max(1, min(8, args.workers))
    command = (
        f".venv/bin/python bench/revocation.py --runs {runs} --workers {workers} "
        f"--database {args.database}"
    )
    if args.worker_notify == "off":
        command += " --worker-notify off"
    samples: dict[str, list[float]] = {name: [] for name in PROBES}
    attempts: dict[str, list[int]] = {name: [] for name in PROBES}
    baselines: dict[str, list[float]] = {name: [] for name in PROBES}
    refused_by: dict[str, int] = {}
    missed: dict[str, int] = dict.fromkeys(PROBES, 0)
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-revocation-") as tmp:
        directory = Path(tmp)
        with database(args.database, directory) as url:
            instance = init_instance(directory, url)
            instance.env["EHRCA_WORKER_NOTIFY"] = "true" if args.worker_notify == "on" else "false"
            add_officer(instance)
            collectables = provision(url, locations=runs)
            with serving(instance, workers=workers):
                token = login(instance)
                for index, collectable in enumerate(collectables, 1):
                    client = Client(directory, instance, collectable)
                    result = one_run(instance, token, client)
                    for name in PROBES:
                        value = result.seconds.get(name)
                        attempts[name].append(result.attempts.get(name, 0))
                        if name in result.baseline:
                            baselines[name].append(result.baseline[name] * 1000)
                        if value is None:
                            missed[name] += 1
                        else:
                            samples[name].append(value * 1000)
                    how = result.new_refused_by or "not refused"
                    refused_by[how] = refused_by.get(how, 0) + 1
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
    print(f"{'(one probe round before the revocation)':38}")
    for name in PROBES:
        if baselines[name]:
            values = baselines[name]
            print(
                f"  {DESCRIPTIONS[name].split(' refused')[0].split(' answers')[0]:36}"
                f" {statistics.median(values):8.1f}  {min(values):8.1f}  {max(values):8.1f}"
            )
    first = {name: sum(1 for a in attempts[name] if a == 1) for name in PROBES}
    print("refused on the first attempt: " + ", ".join(f"{n} {first[n]}/{runs}" for n in PROBES))
    print(f"new connections refused by: {refused_by}")
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    # A poll-only run is a comparison: it neither replaces revocation.json nor the
    # figures in latest.json.
    name = "revocation.json" if args.worker_notify == "on" else "revocation-notify-off.json"
    (out / name).write_text(
        json.dumps(
            {
                "command": command,
                "runs": runs,
                "workers": workers,
                "database": args.database,
                "worker_notify": args.worker_notify,
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
                        "attempts": attempts[name],
                        "probe_round_trip_before_ms": {
                            "median": statistics.median(baselines[name]),
                            "min": min(baselines[name]),
                            "max": max(baselines[name]),
                        }
                        if baselines[name]
                        else None,
                    }
                    for name in PROBES
                },
                "mtls_new_refused_by": refused_by,
            },
            indent=2,
        )
        + "\n"
    )
    if args.worker_notify == "on":
        with contextlib.suppress(OSError):
            write_results(figures)
    print(f"\nwritten: {out / name}")
    return 0 if all(samples[name] for name in PROBES) else 1


if __name__ == "__main__":
    sys.exit(main())

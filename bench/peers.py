"""Other CAs on the same machine in the same run, installed and driven from here (their
code is never copied into ehrca):

- ``peer.openssl_ca.issue_per_s``: ``openssl ca -batch -infiles`` signing P-256 CSRs
  with an EC P-256 CA and a client profile close to ehrca's (one process per batch,
  index.txt written once per batch: no per-certificate durability);
- ``peer.openssl_ca.gencrl_1m_s``: ``openssl ca -gencrl`` over an index.txt with 1M
  revoked entries;
- ``peer.django_ca.issue_per_s``, ``peer.django_ca.crl_100k_s``: django-ca from PyPI in
  its own virtualenv under ``~/.cache/ehrca-bench`` (never the project's), through its
  Python API on SQLite (``bench/peer_django_ca.py``);
- ``peer.cfssl.sign_http_per_s``: ``cfssl serve`` (Debian golang-cfssl) sign endpoint
  ``POST /api/v1/cfssl/sign`` under wrk (``bench/replay.lua``), as ehrca's issuance;
  cfssl stores nothing (no database configured);
- ``peer.cfssl.gencrl_1m_s``: ``cfssl gencrl`` over 1M serial numbers.

A peer that cannot be installed here is recorded as null with the reason.

Run: ``.venv/bin/python bench/peers.py`` (about 4 minutes; ``--only openssl`` etc.).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.common import Figure, print_figures, summarise, this_command, unavailable, write_results
from bench.service import (
    HOST,
    Request,
    Unavailable,
    ensure_command,
    free_port,
    make_csrs,
    run_wrk,
    stop,
    write_requests,
)

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ehrca-bench"
DJANGO_CA_VERSION = os.environ.get("EHRCA_BENCH_DJANGO_CA", "django-ca==3.2.0")

OPENSSL_CNF = """\
[ ca ]
default_ca = bench

[ bench ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/certs
certificate = $dir/ca.pem
private_key = $dir/ca.key
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 730
default_crl_days = 1
policy = policy_any
unique_subject = no
copy_extensions = none
rand_serial = yes
x509_extensions = client_ext
crl_extensions = crl_ext

[ policy_any ]
commonName = supplied

[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://127.0.0.1:8000/pki/crl/bench.crl
authorityInfoAccess = caIssuers;URI:http://127.0.0.1:8000/pki/ca/bench.crt
certificatePolicies = 1.3.6.1.4.1.32473.1.1

[ crl_ext ]
authorityKeyIdentifier = keyid
"""


def make_ca(directory: Path) -> tuple[Path, Path]:
    """An EC P-256 self-signed CA: (certificate PEM, SEC1 key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Peer CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "ca.pem"
    key_path = directory / "ca.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _utc(value: dt.datetime) -> str:
    return value.strftime("%y%m%d%H%M%SZ")


# ------------------------------------------------------------------------------ openssl


def openssl_figures(runs: int, batch: int, crl_size: int, command: str) -> list[Figure]:
    openssl = ensure_command("openssl", "openssl")
    version = subprocess.run(
        [openssl, "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    figures = []
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-openssl-") as tmp:
        directory = Path(tmp)
        make_ca(directory)
        (directory / "certs").mkdir()
        (directory / "index.txt").write_text("")
        (directory / "index.txt.attr").write_text("unique_subject = no\n")
        (directory / "crlnumber").write_text("01\n")
        config = directory / "ca.cnf"
        config.write_text(OPENSSL_CNF.format(dir=directory))
        csr_dir = directory / "csrs"
        csr_dir.mkdir()
        paths = []
        for i, pem in enumerate(make_csrs(batch)):
            path = csr_dir / f"{i}.csr"
            path.write_text(pem)
            paths.append(str(path))
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [
                    openssl,
                    "ca",
                    "-batch",
                    "-config",
                    str(config),
                    "-notext",
                    "-out",
                    str(directory / "out.pem"),
                    "-infiles",
                    *paths,
                ],
                capture_output=True,
                check=True,
                timeout=300,
            )
            samples.append(batch / (time.perf_counter() - start))
        print(f"  openssl ca issue: {', '.join(f'{s:.0f}/s' for s in samples)}", flush=True)
        figures.append(
            summarise(
                "peer.openssl_ca.issue_per_s",
                samples,
                "certificates/s",
                command,
                f"{version}; openssl ca -batch -infiles with {batch} "
                "CSRs per process, index.txt written once per batch",
            )
        )
        # gencrl over crl_size revoked entries.
        now = dt.datetime.now(dt.UTC)
        expiry = _utc(now + dt.timedelta(days=700))
        revoked = _utc(now - dt.timedelta(days=1))
        reasons = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged"]
        with (directory / "index.txt").open("w") as handle:
            for i in range(crl_size):
                serial = f"{secrets.randbits(158) | (1 << 157):040X}"
                handle.write(
                    f"R\t{expiry}\t{revoked},{reasons[i % 4]}\t{serial}\tunknown\t/CN=bench{i}\n"
                )
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [
                    openssl,
                    "ca",
                    "-gencrl",
                    "-config",
                    str(config),
                    "-out",
                    str(directory / "crl.pem"),
                ],
                capture_output=True,
                check=True,
                timeout=600,
            )
            samples.append(time.perf_counter() - start)
            if sum(samples) > 40:
                break
        entries = _count_crl_entries(openssl, directory / "crl.pem")
        if entries != crl_size:
            raise RuntimeError(f"openssl ca -gencrl listed {entries} entries, not {crl_size}")
        print(
            f"  openssl ca -gencrl {crl_size}: {', '.join(f'{s:.2f} s' for s in samples)}",
            flush=True,
        )
        figures.append(
            summarise(
                "peer.openssl_ca.gencrl_1m_s",
                samples,
                "s",
                command,
                f"{version}; {crl_size} revoked entries in index.txt",
            )
        )
    return figures


def _count_crl_entries(openssl: str, path: Path) -> int:
    der = subprocess.run(
        [openssl, "crl", "-in", str(path), "-outform", "DER"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return len(x509.load_der_x509_crl(der))


# -------------------------------------------------------------------------------- cfssl


def cfssl_sign_figures(runs: int, seconds: float, command: str) -> list[Figure]:
    cfssl = ensure_command("cfssl", "golang-cfssl")
    version = (
        subprocess.run([cfssl, "version"], capture_output=True, text=True, check=False)
        .stdout.split("\n")[0]
        .strip()
    )
    figures = []
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-cfssl-") as tmp:
        directory = Path(tmp)
        cert, key = make_ca(directory)
        config = directory / "config.json"
        config.write_text(
            json.dumps(
                {
                    "signing": {
                        "default": {
                            "usages": ["digital signature", "client auth"],
                            "expiry": "17520h",
                            "crl_url": "http://127.0.0.1:8000/pki/crl/bench.crl",
                        }
                    }
                }
            )
        )
        port = free_port()
        log = (directory / "cfssl.log").open("wb")
        process = subprocess.Popen(
            [
                cfssl,
                "serve",
                f"-address={HOST}",
                f"-port={port}",
                f"-ca={cert}",
                f"-ca-key={key}",
                f"-config={config}",
                "-loglevel=5",
            ],
            stdout=log,
            stderr=log,
        )
        try:
            base = f"http://{HOST}:{port}"
            csrs = make_csrs(64)
            body = json.dumps({"certificate_request": csrs[0]})
            _wait_for(lambda: _post_json(base + "/api/v1/cfssl/sign", body), 20.0)
            requests = [
                Request(
                    "POST",
                    "/api/v1/cfssl/sign",
                    "",
                    "application/json",
                    json.dumps({"certificate_request": csrs[i % len(csrs)]}),
                )
                for i in range(60_000)
            ]
            path = directory / "requests.txt"
            write_requests(path, requests)
            run_wrk(base, path, expected_status=200, seconds=1.0)  # warm-up
            samples = []
            for _ in range(runs):
                result = run_wrk(base, path, expected_status=200, seconds=seconds)
                samples.append(result.ok_per_s)
                if result.bad:
                    raise RuntimeError(f"cfssl answered {result.last_bad_status}")
            print(f"  cfssl sign: {', '.join(f'{s:.0f}/s' for s in samples)}", flush=True)
            figures.append(
                summarise(
                    "peer.cfssl.sign_http_per_s",
                    samples,
                    "certificates/s",
                    command,
                    f"cfssl {version} serve, wrk 16 connections, no certificate database",
                )
            )
        finally:
            stop(process)
            log.close()
    return figures


def cfssl_gencrl_figures(runs: int, crl_size: int, command: str) -> list[Figure]:
    cfssl = ensure_command("cfssl", "golang-cfssl")
    version = (
        subprocess.run([cfssl, "version"], capture_output=True, text=True, check=False)
        .stdout.split("\n")[0]
        .strip()
    )
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-cfssl-") as tmp:
        directory = Path(tmp)
        cert, key = make_ca(directory)
        serials = directory / "serials.txt"
        with serials.open("w") as handle:
            for _ in range(crl_size):
                handle.write(f"{secrets.randbits(158) | (1 << 157)}\n")
        samples = []
        out = b""
        for _ in range(runs):
            start = time.perf_counter()
            # (no TIME argument: this cfssl reads it as a file name; the default is 7 days)
            out = subprocess.run(
                [cfssl, "gencrl", str(serials), str(cert), str(key)],
                capture_output=True,
                check=True,
                timeout=600,
            ).stdout
            samples.append(time.perf_counter() - start)
            if sum(samples) > 40:
                break
        entries = len(x509.load_der_x509_crl(base64.b64decode(out)))
        if entries != crl_size:
            raise RuntimeError(f"cfssl gencrl listed {entries} entries, not {crl_size}")
        print(f"  cfssl gencrl {crl_size}: {', '.join(f'{s:.2f} s' for s in samples)}", flush=True)
        return [
            summarise(
                "peer.cfssl.gencrl_1m_s",
                samples,
                "s",
                command,
                f"cfssl {version} gencrl, {crl_size} serials",
            )
        ]


def _post_json(url: str, body: str) -> bool:
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return bool(json.loads(response.read()).get("success"))


def _wait_for(probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError("peer did not answer in time")


# ---------------------------------------------------------------------------- django-ca


def django_ca_python() -> Path:
    """django-ca's own virtualenv under the cache directory (made on first use).

    Raises:
        Unavailable: it cannot be installed here.
    """
    venv = CACHE / "django-ca"
    python = venv / "bin" / "python"
    marker = venv / f".installed-{DJANGO_CA_VERSION}"
    if marker.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if made.returncode != 0:
            raise Unavailable(f"cannot make a virtualenv for django-ca: {made.stderr[-300:]}")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", DJANGO_CA_VERSION],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if installed.returncode != 0:
        raise Unavailable(f"pip install {DJANGO_CA_VERSION} failed: {installed.stderr[-300:]}")
    marker.write_text("")
    return python


def django_ca_figures(runs: int, seconds: float, crl_size: int, command: str) -> list[Figure]:
    python = django_ca_python()
    version = subprocess.run(
        [str(python), "-c", "import django_ca; print(django_ca.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-django-ca-") as tmp:
        done = subprocess.run(
            [
                str(python),
                str(Path(__file__).with_name("peer_django_ca.py")),
                tmp,
                "100000",
                str(seconds),
                str(crl_size),
                str(runs),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
            cwd=tmp,
        )
    if done.returncode != 0:
        raise RuntimeError(f"django-ca driver failed: {done.stderr[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    if data["crl_entries"] != crl_size:
        raise RuntimeError(f"django-ca CRL listed {data['crl_entries']} entries, not {crl_size}")
    print(f"  django-ca issue: {data['issue_per_s']}, CRL {crl_size}: {data['crl_s']}", flush=True)
    note = f"django-ca {version}, SQLite, its Python API"
    return [
        summarise(
            "peer.django_ca.issue_per_s",
            data["issue_per_s"],
            "certificates/s",
            command,
            note + "; Certificate.objects.create_cert, client profile, P-256 CSRs",
        ),
        summarise(
            "peer.django_ca.crl_100k_s",
            data["crl_s"],
            "s",
            command,
            note + f"; create_certificate_revocation_list over {crl_size} revoked",
        ),
    ]


PEERS: dict[str, list[tuple[str, str]]] = {
    "openssl": [
        ("peer.openssl_ca.issue_per_s", "certificates/s"),
        ("peer.openssl_ca.gencrl_1m_s", "s"),
    ],
    "django_ca": [
        ("peer.django_ca.issue_per_s", "certificates/s"),
        ("peer.django_ca.crl_100k_s", "s"),
    ],
    "cfssl_sign": [("peer.cfssl.sign_http_per_s", "certificates/s")],
    "cfssl_gencrl": [("peer.cfssl.gencrl_1m_s", "s")],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(PEERS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=300, help="CSRs per openssl ca run")
    parser.add_argument("--crl-size", type=int, default=1_000_000)
    parser.add_argument("--django-crl-size", type=int, default=100_000)
    args = parser.parse_args()
    command = this_command()
    figures: list[Figure] = []
    for peer in args.only or list(PEERS):
        if figures:
            write_results(figures)  # what is measured so far survives a time-out
        print(f"peer {peer}", flush=True)
        try:
            if peer == "openssl":
                figures += openssl_figures(args.runs, args.batch, args.crl_size, command)
            elif peer == "cfssl_sign":
                figures += cfssl_sign_figures(args.runs, args.seconds, command)
            elif peer == "cfssl_gencrl":
                figures += cfssl_gencrl_figures(args.runs, args.crl_size, command)
            else:
                figures += django_ca_figures(args.runs, args.seconds, args.django_crl_size, command)
        except (Unavailable, RuntimeError, subprocess.SubprocessError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:500]
            print(f"  {peer}: not measured: {reason}", flush=True)
            figures += [unavailable(i, u, command, reason) for i, u in PEERS[peer]]
    print_figures(figures)
    write_results(figures)


if __name__ == "__main__":
    main()

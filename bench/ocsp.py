"""OCSP: pre-signed responses per second from the running service's responder,
``GET /pki/ocsp/{ca}/{base64 request}`` and ``POST /pki/ocsp/{ca}`` (RFC 6960
appendix A), with ``ehrca serve --workers 1`` (the target: at least 5,000/s).

The script initialises an ehrca (SQLite), collects certificates through the HTTP API,
asks the responder once per certificate (so its pre-signed responses exist), then
replays the OCSP requests with ``wrk`` (``bench/replay.lua``), bounded by count and
time; only 200 answers of type ``application/ocsp-response`` count (checked on a
sample with cryptography before the load).

The first request per certificate fills the responder's in-process memory cache
(``revocation.ocsp_cache``), so the load measures the fast path that answers cache hits
before FastAPI (``api.routes.ocsp.OCSPFastPath``): what a responder serving a
certificate population does between revocations.

Figures: ``ocsp.presigned_per_s`` (GET and POST together: the median over GET and POST
runs), ``ocsp.presigned_get_per_s``, ``ocsp.presigned_post_per_s``,
``ocsp.presigned_server_cpu_ms`` (server CPU per response). The baseline, in the same
run and with the same wrk load: ``ocsp.bare_http_per_s``, a bare ASGI app on uvicorn
configured as ``ehrca serve`` configures it (asyncio loop, httptools, access log on),
sending a fixed body of the same size: the ceiling of any Python responder here. When
the service has no OCSP responder yet (no ``/pki/ocsp`` route), the figures are recorded
as null with that reason.

Run: ``.venv/bin/python bench/ocsp.py`` (about 1 minute).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from bench.common import Figure, print_figures, summarise, this_command, unavailable, write_results
from bench.service import (
    HOST,
    READY_TIMEOUT,
    Instance,
    Request,
    Unavailable,
    collect_requests,
    database,
    free_port,
    init_instance,
    make_csrs,
    process_tree_cpu_seconds,
    provision,
    run_wrk,
    serving,
    stop,
    write_requests,
)

IDS = (
    ("ocsp.presigned_per_s", "responses/s"),
    ("ocsp.presigned_get_per_s", "responses/s"),
    ("ocsp.presigned_post_per_s", "responses/s"),
    ("ocsp.presigned_server_cpu_ms", "server CPU ms/response"),
    ("ocsp.bare_http_per_s", "responses/s"),
)


def bare_server(port: int, size: int) -> None:
    """Serve a bare ASGI app on 127.0.0.1:``port`` as ``ehrca serve`` runs uvicorn
    (``asyncio.run``, default http implementation, ``log_level="info"``, so the access
    log is on): every request answered 200 with ``size`` octets of
    ``application/ocsp-response`` and ``no-store``."""
    import uvicorn

    body = b"\x00" * size
    headers = [
        (b"content-length", str(size).encode()),
        (b"content-type", b"application/ocsp-response"),
        (b"cache-control", b"no-store"),
    ]

    async def app(
        scope: dict[str, object],
        receive: Callable[[], Awaitable[object]],
        send: Callable[[dict[str, object]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, host=HOST, port=port, log_level="info", proxy_headers=False)
    asyncio.run(uvicorn.Server(config).serve())


def _measure_bare(
    directory: Path, size: int, requests_file: Path, runs: int, seconds: float
) -> tuple[list[float], list[float]]:
    """Rates and server CPU ms per response of :func:`bare_server` under the same load."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--bare-server", str(port), "--bare-size", str(size)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(base_url + "/", timeout=2) as r:  # noqa: S310
                    r.read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare uvicorn server did not start") from None
                time.sleep(0.1)
        run_wrk(base_url, requests_file, expected_status=200, seconds=1.0, connections=32)
        rates: list[float] = []
        cpu_ms: list[float] = []
        for _ in range(runs):
            cpu_before = process_tree_cpu_seconds(process.pid)
            result = run_wrk(
                base_url, requests_file, expected_status=200, seconds=seconds, connections=32
            )
            rates.append(result.ok_per_s)
            cpu_ms.append(
                1000 * (process_tree_cpu_seconds(process.pid) - cpu_before) / max(result.ok, 1)
            )
            print(
                f"  bare uvicorn GET: {result.ok_per_s:.0f}/s "
                f"server CPU {cpu_ms[-1]:.3f} ms/response",
                flush=True,
            )
        return rates, cpu_ms
    finally:
        stop(process)


def _issuer_name(instance: Instance) -> tuple[str, x509.Certificate]:
    with urllib.request.urlopen(instance.base_url + "/pki/issuers", timeout=10) as r:  # noqa: S310
        issuers = json.loads(r.read())
    for issuer in issuers:
        if "issuing" in issuer.get("name", ""):
            name = issuer["name"]
            with urllib.request.urlopen(  # noqa: S310
                f"{instance.base_url}/pki/ca/{name}.crt", timeout=10
            ) as r:
                return name, x509.load_der_x509_certificate(r.read())
    raise RuntimeError(f"no issuing CA in /pki/issuers: {issuers}")


def _post(url: str, body: bytes, content_type: str, auth: str = "") -> tuple[int, bytes, str]:
    headers = {"Content-Type": content_type}
    if auth:
        headers["Authorization"] = auth
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as r:  # noqa: S310
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def measure(runs: int, seconds: float, certificates: int, count: int) -> list[Figure]:
    command = this_command()
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-ocsp-") as tmp:
        directory = Path(tmp)
        with database("sqlite", directory) as url:
            instance = init_instance(directory, url, lint=False)
            items = provision(url, locations=certificates)
            with serving(instance, workers=1) as process:
                name, issuer = _issuer_name(instance)
                ocsp_url = f"{instance.base_url}/pki/ocsp/{name}"
                collected = []
                for request in collect_requests(items, make_csrs(8)):
                    assert isinstance(request.body, str)
                    status, data, _ = _post(
                        instance.base_url + request.target,
                        request.body.encode(),
                        "application/json",
                        request.authorization,
                    )
                    if status != 201:
                        raise RuntimeError(f"collection failed: {status} {data[:300]!r}")
                    collected.append(
                        x509.load_pem_x509_certificate(json.loads(data)["certificate_pem"].encode())
                    )
                ders = [
                    ocsp.OCSPRequestBuilder()
                    .add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303 - RFC 5019 CertID
                    .build()
                    .public_bytes(serialization.Encoding.DER)
                    for cert in collected
                ]
                status, data, content_type = _post(ocsp_url, ders[0], "application/ocsp-request")
                if status in (404, 405) and content_type != "application/ocsp-response":
                    raise Unavailable(
                        f"the service has no OCSP responder yet: POST {ocsp_url} answered {status}"
                    )
                if status != 200:
                    raise RuntimeError(f"OCSP POST answered {status}: {data[:300]!r}")
                response = ocsp.load_der_ocsp_response(data)
                if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                    raise RuntimeError(f"OCSP answered {response.response_status}")
                for der in ders:  # every pre-signed response exists before the load
                    _post(ocsp_url, der, "application/ocsp-request")
                get_file = directory / "ocsp-get.txt"
                write_requests(
                    get_file,
                    [
                        Request(
                            "GET",
                            f"/pki/ocsp/{name}/"
                            + urllib.parse.quote(
                                base64.b64encode(ders[i % len(ders)]).decode(), safe=""
                            ),
                        )
                        for i in range(count)
                    ],
                )
                post_file = directory / "ocsp-post.txt"
                write_requests(
                    post_file,
                    [
                        Request(
                            "POST",
                            f"/pki/ocsp/{name}",
                            "",
                            "application/ocsp-request",
                            ders[i % len(ders)],
                        )
                        for i in range(count)
                    ],
                )
                size = len(data)
                results: dict[str, list[float]] = {"get": [], "post": []}
                cpu_ms: list[float] = []
                for method, path in (("get", get_file), ("post", post_file)):
                    run_wrk(
                        instance.base_url, path, expected_status=200, seconds=1.0, connections=32
                    )  # warm-up
                    for _ in range(runs):
                        cpu_before = process_tree_cpu_seconds(process.pid)
                        result = run_wrk(
                            instance.base_url,
                            path,
                            expected_status=200,
                            seconds=seconds,
                            connections=32,
                        )
                        results[method].append(result.ok_per_s)
                        cpu_ms.append(
                            1000
                            * (process_tree_cpu_seconds(process.pid) - cpu_before)
                            / max(result.ok, 1)
                        )
                        print(
                            f"  OCSP {method.upper()}: {result.ok_per_s:.0f}/s "
                            f"server CPU {cpu_ms[-1]:.2f} ms/response "
                            f"(failed {result.bad}, last {result.last_bad_status})",
                            flush=True,
                        )
            bare, bare_cpu_ms = _measure_bare(directory, size, get_file, runs, seconds)
    note = "ehrca serve --workers 1, wrk 32 connections"
    both = results["get"] + results["post"]
    ratio = statistics.median(both) / statistics.median(bare)
    cpu_ratio = statistics.median(cpu_ms) / statistics.median(bare_cpu_ms)
    return [
        summarise(
            "ocsp.presigned_per_s",
            both,
            "responses/s",
            command,
            note + f"; GET and POST runs together; {ratio:.0%} of ocsp.bare_http_per_s "
            f"(server CPU per response {cpu_ratio:.2f}x the bare app's)",
        ),
        summarise("ocsp.presigned_get_per_s", results["get"], "responses/s", command, note),
        summarise("ocsp.presigned_post_per_s", results["post"], "responses/s", command, note),
        summarise(
            "ocsp.presigned_server_cpu_ms",
            cpu_ms,
            "server CPU ms/response",
            command,
            "user+system CPU of ehrca serve per OCSP response (GET and POST runs)",
        ),
        summarise(
            "ocsp.bare_http_per_s",
            bare,
            "responses/s",
            command,
            "baseline: a bare ASGI app on uvicorn as ehrca serve runs it, same wrk load "
            f"(GET file), {size}-octet body; server CPU "
            f"{statistics.median(bare_cpu_ms):.3f} ms/response",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--certificates", type=int, default=50)
    parser.add_argument("--count", type=int, default=60_000, help="requests per run")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-size", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server, args.bare_size)
        return
    try:
        figures = measure(args.runs, args.seconds, args.certificates, args.count)
    except Unavailable as exc:
        command = this_command()
        print(f"ocsp: skipped: {exc}", flush=True)
        figures = [unavailable(i, u, command, f"skipped: {exc}") for i, u in IDS]
    print_figures(figures)
    write_results(figures)


if __name__ == "__main__":
    main()

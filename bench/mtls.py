"""The mTLS listener: full TLS 1.3 handshakes with client certificates, and
``/mtls/whoami`` requests on keep-alive connections.

The script initialises an ehrca (SQLite), collects one client certificate through the
HTTP API (CSR path), then drives the mTLS port from a separate client process
(``--client``), bounded by count and time:

- ``mtls.handshake_per_s``: new connections per second, each a full TLS 1.3 handshake
  (no session tickets, no resumption) presenting the client certificate, closed with
  close_notify and counted once the server's close_notify arrives — i.e. after the
  server has verified the certificate chain and the CRLs. Client threads (the handshake
  runs in OpenSSL without the GIL).
- ``mtls.whoami_per_s``: ``GET /mtls/whoami`` answers (200) per second over keep-alive
  connections (asyncio client, one request in flight per connection).

Each figure comes with the server's CPU per operation (``*_server_cpu_ms``: user + system
CPU of every ``ehrca serve`` process over the run, divided by the answers), which the
other load on a shared machine does not inflate. The baseline, measured in the same run:
``mtls.limit.handshake_server_ms``, the server side of a full handshake in OpenSSL alone
(the served SSL context from ``api.server.build_mtls_context``: same certificates, CRLs
and policy; memory BIOs, one thread, no sockets, no event loop; CPU time).

With ``ehrca serve --workers 1`` (client and server then get about one core each on a
2-core machine); ``--workers 1,2`` adds ``mtls.w2.*``.

Run: ``.venv/bin/python bench/mtls.py`` (about 40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.common import Figure, print_figures, summarise, this_command, unavailable, write_results
from bench.service import (
    HOST,
    Instance,
    Unavailable,
    database,
    init_instance,
    process_tree_cpu_seconds,
    provision,
    serving,
)


def collect_client_certificate(instance: Instance, directory: Path) -> tuple[Path, Path, Path]:
    """Collect one certificate over HTTP; write (cert chain PEM, key PEM, root PEM)."""
    item = provision(instance.database_url, locations=1)[0]
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
        instance.base_url + item.path,
        data=json.dumps({"download_code": item.code, "csr": csr}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {item.token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        body = json.loads(response.read())
    cert_path = directory / "client.pem"
    key_path = directory / "client.key"
    root_path = directory / "root.pem"
    chain = body["chain_pem"]
    cert_path.write_text(body["certificate_pem"] + chain)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # The chain is issuing CA then root: trust the root.
    root_path.write_text(chain[chain.index("-----BEGIN CERTIFICATE-----", 1) :])
    return cert_path, key_path, root_path


def _context(cert: str, key: str, root: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=root)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key)
    return context


def client_handshakes(args: argparse.Namespace) -> dict[str, float]:
    """Threads doing full handshakes until ``count`` or ``seconds``; counts completed ones."""
    context = _context(args.cert, args.key, args.root)
    lock = threading.Lock()
    done = [0, 0]  # completed, failed
    deadline = time.monotonic() + args.seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if done[0] + done[1] >= args.count:
                    return
            try:
                with socket.create_connection((HOST, args.port), timeout=10) as raw:
                    # As curl, urllib3 and Go do: without it Nagle holds our close_notify
                    # until the server ACKs our Finished, which it delays (up to 40 ms on
                    # Linux) because it sends nothing after the handshake (no tickets).
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
                    tls.unwrap()  # our close_notify, then wait for the server's
                ok = 1
            except (OSError, ssl.SSLError):
                ok = 0
            with lock:
                done[0 if ok else 1] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.seconds + 30)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "ok": done[0], "failed": done[1]}


def _memory_handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> float:
    """One full handshake over memory BIOs; the CPU seconds of the server's side
    (``time.thread_time``: other load on the machine does not count)."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    client_side = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    spent = 0.0
    for _ in range(8):  # TLS 1.3 with a client certificate: two client flights
        with contextlib.suppress(ssl.SSLWantReadError):
            client_side.do_handshake()
        s_in.write(c_out.read())
        start = time.thread_time()
        try:
            server_side.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        spent += time.thread_time() - start
        c_in.write(s_out.read())
        if done:
            return spent
    raise RuntimeError("the in-memory handshake did not complete")


def client_limit(args: argparse.Namespace) -> dict[str, float]:
    """The OpenSSL floor (run with the instance's environment): handshakes with the
    served context until ``count`` or ``seconds``; reports server-side time only."""
    from api.server import build_mtls_context
    from api.services import build_services
    from api.settings import Settings

    services = build_services(Settings())
    try:
        server = build_mtls_context(services)
    finally:
        services.dispose()
    client = _context(args.cert, args.key, args.root)
    _memory_handshake(server, client)  # warm-up
    spent, done = 0.0, 0
    deadline = time.monotonic() + args.seconds
    while done < args.count and time.monotonic() < deadline:
        spent += _memory_handshake(server, client)
        done += 1
    return {"seconds": spent, "ok": done, "failed": 0}


async def _whoami(args: argparse.Namespace) -> dict[str, float]:
    context = _context(args.cert, args.key, args.root)
    request = f"GET /mtls/whoami HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n\r\n".encode()
    counts = {"ok": 0, "failed": 0}
    deadline = time.monotonic() + args.seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(
            HOST, args.port, ssl=context, server_hostname="127.0.0.1"
        )
        try:
            while time.monotonic() < deadline and counts["ok"] + counts["failed"] < args.count:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                counts["ok" if status == 200 else "failed"] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(args.concurrency)))
    return {"seconds": time.perf_counter() - start, **counts}


def run_client(
    mode: str,
    port: int,
    files: tuple[Path, Path, Path],
    *,
    seconds: float,
    count: int,
    concurrency: int,
    instance: Instance | None = None,
) -> dict[str, float]:
    """Run the load client in a separate process (with ``instance``'s environment and
    directory if given); its JSON result."""
    cert, key, root = files
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            mode,
            "--port",
            str(port),
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--root",
            str(root),
            "--seconds",
            str(seconds),
            "--count",
            str(count),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
        env=instance.env if instance is not None else None,
        cwd=instance.directory if instance is not None else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"client failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ratio(samples: list[float], baseline: list[float]) -> float:
    return statistics.median(samples) / statistics.median(baseline)


def measure(runs: int, seconds: float, workers_list: list[int]) -> list[Figure]:
    command = this_command()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ehrca-bench-mtls-") as tmp:
        directory = Path(tmp)
        with database("sqlite", directory) as url:
            instance = init_instance(directory, url)
            limit_ms: list[float] = []
            for workers in workers_list:
                prefix = "mtls." if workers == 1 else f"mtls.w{workers}."
                with serving(instance, workers=workers) as process:
                    files = collect_client_certificate(instance, directory)
                    if not figures:  # the OpenSSL floor, once, while the server idles
                        limit_ms.clear()
                        for _ in range(runs):
                            result = run_client(
                                "limit",
                                0,
                                files,
                                seconds=min(seconds, 2.0),
                                count=2_000,
                                concurrency=1,
                                instance=instance,
                            )
                            limit_ms.append(1000 * result["seconds"] / max(result["ok"], 1))
                        print(
                            "  mtls.limit.handshake_server_ms: "
                            + ", ".join(f"{v:.3f}" for v in limit_ms)
                        )
                        figures.append(
                            summarise(
                                "mtls.limit.handshake_server_ms",
                                limit_ms,
                                "CPU ms/handshake (server side, OpenSSL only)",
                                command,
                                "the served SSL context, memory BIOs, one thread",
                            )
                        )
                    for mode, figure_id, unit, concurrency, count in (
                        ("handshake", prefix + "handshake_per_s", "handshakes/s", 4, 20_000),
                        ("whoami", prefix + "whoami_per_s", "requests/s", 16, 50_000),
                    ):
                        run_client(
                            mode,
                            instance.mtls_port,
                            files,
                            seconds=1.0,
                            count=200,
                            concurrency=concurrency,
                        )  # warm-up
                        samples = []
                        cpu_ms: list[float] = []
                        failed = 0
                        for _ in range(runs):
                            cpu_before = process_tree_cpu_seconds(process.pid)
                            result = run_client(
                                mode,
                                instance.mtls_port,
                                files,
                                seconds=seconds,
                                count=count,
                                concurrency=concurrency,
                            )
                            cpu_ms.append(
                                1000
                                * (process_tree_cpu_seconds(process.pid) - cpu_before)
                                / max(result["ok"], 1)
                            )
                            samples.append(result["ok"] / result["seconds"])
                            failed += int(result["failed"])
                        print(
                            f"  {figure_id}: "
                            + ", ".join(f"{s:.0f}" for s in samples)
                            + "; server CPU ms/op: "
                            + ", ".join(f"{c:.3f}" for c in cpu_ms),
                            flush=True,
                        )
                        note = (
                            f"ehrca serve --workers {workers}; {concurrency} client "
                            f"{'threads' if mode == 'handshake' else 'connections'}; "
                            f"{failed} failed"
                        )
                        figures.append(summarise(figure_id, samples, unit, command, note))
                        figures.append(
                            summarise(
                                figure_id.replace("_per_s", "_server_cpu_ms"),
                                cpu_ms,
                                "server CPU ms/" + ("request" if mode == "whoami" else mode),
                                command,
                                f"ehrca serve --workers {workers}, all processes"
                                + (
                                    f"; {_ratio(cpu_ms, limit_ms):.2f}x the OpenSSL floor"
                                    " (mtls.limit.handshake_server_ms)"
                                    if mode == "handshake" and limit_ms
                                    else ""
                                ),
                            )
                        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", default="1", help="e.g. 1,2 (w2 figures: mtls.w2.*)")
    parser.add_argument("--client", choices=["handshake", "whoami", "limit"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--root")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.client == "handshake":
        print(json.dumps(client_handshakes(args)))
        return
    if args.client == "limit":
        print(json.dumps(client_limit(args)))
        return
    if args.client == "whoami":
        print(json.dumps(asyncio.run(_whoami(args))))
        return
    try:
        figures = measure(args.runs, args.seconds, [int(w) for w in args.workers.split(",")])
    except Unavailable as exc:
        command = this_command()
        figures = [
            unavailable(i, u, command, str(exc))
            for i, u in (
                ("mtls.handshake_per_s", "handshakes/s"),
                ("mtls.whoami_per_s", "requests/s"),
            )
        ]
    print_figures(figures)
    write_results(figures)


if __name__ == "__main__":
    main()

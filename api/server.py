"""``ehrca serve``: the HTTP API and the mTLS listener in one asyncio loop, so the
revocation status is shared in memory, plus the periodic tasks:

- revocation status poll every 0.5 s (other workers' revocations, DESIGN.md);
- every job of :data:`api.tasks.TASKS` at its interval (mail retries every 30 s, CRL
  re-signing every ``crl_refresh_seconds``, default 1 h, well before nextUpdate, ...);
- a CRL publication swaps a fresh SSL context into the mTLS listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import ssl
from collections.abc import Callable
from functools import partial

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from api.app import create_app, create_mtls_app
from api.services import Services, build_services
from api.tasks import TASKS, interval
from api.tls import SSLContextHolder, build_server_ssl_context, build_uvicorn_server
from ca.models import CARole
from ca.service import MTLS_SERVER_KEY_NAME, get_authority, latest_server_certificate
from revocation.queries import newest_crl_id
from revocation.service import latest_crl

log = logging.getLogger("ehrca.server")

STATUS_POLL_SECONDS = 0.5


def build_mtls_context(services: Services) -> ssl.SSLContext:
    """A fresh inner SSL context for the mTLS listener from the database: server
    certificate + issuing CA, trust in root + issuing CA, their newest CRLs.

    Raises:
        ca.service.CANotInitialised: no CA or no server certificate.
        ValueError: a CA has no published CRL yet.
    """
    pem = serialization.Encoding.PEM
    with services.sessions() as session:
        root = get_authority(session, CARole.ROOT)
        issuing = get_authority(session, CARole.ISSUING)
        server = latest_server_certificate(session)
        crls = []
        for authority in (root, issuing):
            row = latest_crl(session, authority.id)
            if row is None:
                raise ValueError(f"no CRL published for {authority.name}; run `ehrca crl publish`")
            crls.append(row.crl_der)
        assert server.certificate_der is not None
        server_cert = x509.load_der_x509_certificate(server.certificate_der)
        root_cert = x509.load_der_x509_certificate(root.certificate_der)
        issuing_cert = x509.load_der_x509_certificate(issuing.certificate_der)
    key = services.keystore.load_key(f"file:{MTLS_SERVER_KEY_NAME}.key.pem")
    return build_server_ssl_context(
        certificate_chain_pem=server_cert.public_bytes(pem) + issuing_cert.public_bytes(pem),
        private_key=key,
        client_ca_pem=root_cert.public_bytes(pem) + issuing_cert.public_bytes(pem),
        crl_ders=crls,
    )


async def _every(seconds: float, job: Callable[[], object], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(job)
        except Exception:  # a periodic task must survive one failure
            log.exception("periodic task %s failed", name)


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on ``host``:``port``.

    With ``reuse_port`` every worker process binds its own socket to the same port
    (``SO_REUSEPORT``) and the kernel spreads new connections over them, which keeps
    keep-alive connections balanced between workers (one shared socket can leave
    them all on one worker).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class _ListenerState:
    """Per-process view of what the mTLS listener has loaded: the newest CRL row id."""

    def __init__(self) -> None:
        self.crl_version = -1


def _refresh_status(services: Services, state: _ListenerState, swap: Callable[[], None]) -> None:
    """Poll the revocation version and the newest CRL (other workers' revocations and
    publications); swap in a fresh SSL context when a CRL newer than the loaded one
    exists."""
    with services.sessions() as session:
        services.revocation_status.refresh(session)
        version = newest_crl_id(session)
    if version != state.crl_version:
        swap()
        state.crl_version = version


async def serve(services: Services, *, worker: int = 0, reuse_port: bool = False) -> None:
    """Run both listeners and the periodic tasks until SIGINT/SIGTERM.

    Args:
        worker: index of this worker process; only worker 0 publishes CRLs at start
            and runs :data:`api.tasks.TASKS` (the jobs are idempotent, but one runner
            is enough).
        reuse_port: bind with ``SO_REUSEPORT`` (several workers).
    """
    settings = services.settings
    if worker == 0:
        services.publish_crls()
    holder = SSLContextHolder(build_mtls_context(services))
    state = _ListenerState()

    def swap_context() -> None:
        holder.swap(build_mtls_context(services))

    _refresh_status(services, state, swap_context)
    services.crl_listeners.append(swap_context)
    http_server = uvicorn.Server(
        uvicorn.Config(
            create_app(services),
            host=settings.http_host,
            port=settings.http_port,
            log_level="info",
            proxy_headers=False,
        )
    )
    mtls_server = build_uvicorn_server(
        create_mtls_app(services),
        host=settings.mtls_host,
        port=settings.mtls_port,
        holder=holder,
        log_level="info",
    )
    http_socket = bind_socket(settings.http_host, settings.http_port, reuse_port=reuse_port)
    mtls_socket = bind_socket(settings.mtls_host, settings.mtls_port, reuse_port=reuse_port)
    running = [
        asyncio.create_task(
            _every(
                STATUS_POLL_SECONDS,
                partial(_refresh_status, services, state, swap_context),
                "status",
            )
        )
    ]
    if worker == 0:
        for task in TASKS:
            running.append(
                asyncio.create_task(
                    _every(interval(task, services), partial(task.run, services), task.name)
                )
            )
    log.info(
        "ehrca worker %d: HTTP API on http://%s:%d, mTLS on https://%s:%d",
        worker,
        settings.http_host,
        settings.http_port,
        settings.mtls_host,
        settings.mtls_port,
    )
    try:
        await asyncio.gather(
            http_server.serve(sockets=[http_socket]), mtls_server.serve(sockets=[mtls_socket])
        )
    finally:
        for job in running:
            job.cancel()
        for job in running:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        services.dispose()


def exit_on_sigterm() -> None:
    """Make SIGTERM end the process with ``SystemExit(0)`` once uvicorn has shut down.

    uvicorn captures SIGTERM while serving, shuts down, restores the previous handler
    and re-raises the signal; with the default handler the process would die there and
    skip :func:`serve`'s cleanup (``finally``), so install this one before serving.
    """

    def _exit(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)


def run_single(services: Services, *, worker: int = 0, reuse_port: bool = False) -> None:
    """Run :func:`serve` in this process until SIGINT or SIGTERM, then return."""
    exit_on_sigterm()
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(serve(services, worker=worker, reuse_port=reuse_port))


def _worker_main(worker: int) -> None:
    """Entry point of one worker process (settings come from the inherited environment)."""
    from api.settings import Settings

    run_single(build_services(Settings()), worker=worker, reuse_port=True)


def serve_workers(workers: int) -> int:
    """Run ``workers`` worker processes (spawned), each with both listeners on shared
    ports (``SO_REUSEPORT``); forward SIGINT/SIGTERM to them and wait. Returns the exit
    code (0 when every worker exited cleanly)."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_main, args=(i,), name=f"ehrca-worker-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def _stop(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if all(p.exitcode in (0, -signal.SIGTERM) for p in processes) else 1

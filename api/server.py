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
from collections.abc import Awaitable, Callable
from functools import partial

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from api.app import create_app, create_mtls_app
from api.services import Services
from api.tasks import TASKS, interval
from api.tls import SSLContextHolder, build_server_ssl_context, build_uvicorn_server
from ca.models import CARole
from ca.service import MTLS_SERVER_KEY_NAME, get_authority, latest_server_certificate
from revocation.service import latest_crl

log = logging.getLogger("ehrca.server")

STATUS_POLL_SECONDS = 0.5


def build_mtls_context(services: Services) -> object:
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


def _refresh_status(services: Services) -> None:
    with services.sessions() as session:
        services.revocation_status.refresh(session)


async def serve(services: Services, *, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run both listeners and the periodic tasks until SIGINT/SIGTERM."""
    settings = services.settings
    _refresh_status(services)
    services.publish_crls()
    holder = SSLContextHolder(build_mtls_context(services))  # type: ignore[arg-type]

    def swap_context() -> None:
        holder.swap(build_mtls_context(services))  # type: ignore[arg-type]

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
    tasks = [
        asyncio.create_task(
            _every(STATUS_POLL_SECONDS, lambda: _refresh_status(services), "status")
        )
    ]
    for task in TASKS:
        tasks.append(
            asyncio.create_task(
                _every(interval(task, services), partial(task.run, services), task.name)
            )
        )
    log.info(
        "ehrca: HTTP API on http://%s:%d, mTLS on https://%s:%d",
        settings.http_host,
        settings.http_port,
        settings.mtls_host,
        settings.mtls_port,
    )
    try:
        await asyncio.gather(http_server.serve(), mtls_server.serve())
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        services.dispose()

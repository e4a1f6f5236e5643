"""``ehrca serve``: the HTTP API and the mTLS listener in one asyncio loop, so the
revocation status is shared in memory, plus the periodic tasks:

- the mTLS listener kept current (:class:`ListenerSync`): the revocation status and the
  SSL context with the newest CRLs are refreshed when a sibling worker on this host
  says it revoked or published (:mod:`api.notify`, within milliseconds), and by a poll
  of the database every ``EHRCA_STATUS_POLL_SECONDS`` (default 0.5 s) as the fallback
  (workers on other hosts, lost datagrams; DESIGN.md);
- every job of :data:`api.tasks.TASKS` at its interval (mail retries every 30 s, CRL
  re-signing every ``crl_refresh_seconds``, default 1 h, well before nextUpdate, ...);
- a CRL publication swaps a fresh SSL context into the mTLS listener.

Both listeners' sockets are bound here with ``TCP_NODELAY``: asyncio sets it only on
sockets it creates itself, and without it a response written in two pieces waits for
the client's delayed ACK (about 40 ms per keep-alive request).
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
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from time import monotonic

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from api.app import create_app, create_mtls_app
from api.notify import CoalescedJob, Notification, WorkerNotifier
from api.services import Services, build_services
from api.settings import Settings
from api.tasks import TASKS, interval
from api.tls import SSLContextHolder, build_server_ssl_context, build_uvicorn_server
from ca.models import CARole
from ca.service import MTLS_SERVER_KEY_NAME, get_authority, latest_server_certificate
from revocation.queries import newest_crl_id
from revocation.service import latest_crl

log = logging.getLogger("ehrca.server")

#: Default seconds between two polls of the database by each worker (the fallback
#: behind the sibling notifications); ``EHRCA_STATUS_POLL_SECONDS`` sets it.
STATUS_POLL_SECONDS: float = Settings.model_fields["status_poll_seconds"].default
#: :meth:`ListenerSync.is_current` holds while the last successful status refresh
#: started at most this many poll intervals ago (two late polls are tolerated).
CURRENT_POLLS = 3


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

    The socket is created with ``IPPROTO_TCP`` and ``TCP_NODELAY``, which accepted
    connections inherit on Linux: asyncio's own ``TCP_NODELAY`` (``_set_nodelay``) only
    applies to sockets whose ``proto`` is ``IPPROTO_TCP``, and with Nagle's algorithm on,
    uvicorn's response body (written after its headers) waited for the client's delayed
    ACK, about 40 ms on every request after the first on a connection (RFC 896, RFC 1122
    4.2.3.2).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class ListenerSync:
    """Keeps this worker's mTLS listener in step with the database: the revocation
    status (``services.revocation_status``) and the SSL context in ``holder`` (the
    newest CRLs, so new handshakes of revoked clients fail in the TLS layer).

    Two :class:`api.notify.CoalescedJob` instances, each in its own thread so the event loop
    never waits for the database: the *status* job runs the incremental
    :meth:`~revocation.status.RevocationStatusCache.refresh` (revocations newer than
    the cache's version: one small query) and reads the newest CRL id; when that
    differs from the loaded one it requests the *swap* job, which builds a fresh SSL
    context (:func:`build_mtls_context`) and swaps it in. A slow swap (a large CRL)
    therefore never delays the next status refresh.

    The status job runs on every notification from a sibling (``notifier``) and every
    ``poll_seconds`` (the fallback); a CRL notification also requests the swap job at
    once, without waiting for the status job's CRL check. While the status job runs,
    ``notifier`` is muted in its thread, so revocations learned from the database are
    not echoed to the siblings; the revocations this process commits itself
    (``mark_revoked``) and the CRLs it publishes are announced (:meth:`connect`).

    Swaps are serialised by a lock and record the CRL id they loaded (read before the
    context is built, so the recorded id is never newer than what was loaded), so an
    older context never replaces a newer one.
    """

    def __init__(
        self,
        services: Services,
        holder: SSLContextHolder,
        *,
        notifier: WorkerNotifier | None = None,
        poll_seconds: float = STATUS_POLL_SECONDS,
    ) -> None:
        """Args:
        services: this worker's services (sessions, status cache, keys).
        holder: the mTLS listener's context holder.
        notifier: the sibling bus, opened; ``None``: polling only.
        poll_seconds: seconds between two polls (> 0).
        """
        self.services = services
        self.holder = holder
        self.notifier = notifier
        self.poll_seconds = poll_seconds
        self.crl_version = -1
        self._refreshed_at: float | None = None  # monotonic() of the last good refresh
        self._swap_lock = threading.Lock()
        self._status_job = CoalescedJob(
            self.refresh_status, name="ehrca-status", on_result=self._after_status
        )
        self._swap_job = CoalescedJob(self.swap_if_newer, name="ehrca-crl-swap")
        self._poller: asyncio.Task[None] | None = None

    def connect(self) -> None:
        """Announce this process's revocations and CRL publications to the siblings and
        swap in a fresh context after each publication here (``services.crl_listeners``,
        run before the answer that caused it leaves). The siblings are told first, so
        they build their new contexts while this worker builds its own."""
        if self.notifier is not None:
            self.services.revocation_status.add_listener(self.notifier.revocation_listener)
            self.services.crl_listeners.append(self.notifier.crl_listener)
        self.services.crl_listeners.append(self.swap_after_publication)

    def refresh_status(self) -> bool:
        """Load new revocations into the status cache (muted); return True if a CRL
        newer than the loaded context exists. Blocking (two small queries)."""
        started = monotonic()
        muted = self.notifier.muted() if self.notifier is not None else contextlib.nullcontext()
        with muted, self.services.sessions() as session:
            self.services.revocation_status.refresh(session)
            version = newest_crl_id(session)
        self._refreshed_at = started
        return version != self.crl_version

    def is_current(self) -> bool:
        """True if the last successful status refresh started at most
        :data:`CURRENT_POLLS` poll intervals ago: the status cache then holds every
        revocation committed before that refresh began. While :meth:`start` is in
        effect it is ``services.revocation_status_current`` (``/mtls/whoami`` then
        trusts the cache instead of re-reading the row, :mod:`api.routes.mtls`)."""
        refreshed_at = self._refreshed_at
        return (
            refreshed_at is not None
            and monotonic() - refreshed_at <= CURRENT_POLLS * self.poll_seconds
        )

    def swap_if_newer(self) -> bool:
        """Swap a fresh SSL context into the holder if a CRL newer than the loaded one
        exists; return whether it swapped. Blocking; thread-safe.

        Raises:
            As :func:`build_mtls_context`.
        """
        with self._swap_lock:
            with self.services.sessions() as session:
                version = newest_crl_id(session)
            if version == self.crl_version:
                return False
            self.holder.swap(build_mtls_context(self.services))
            self.crl_version = version
            return True

    def swap_after_publication(self) -> None:
        """A ``Services.crl_listeners`` callback: :meth:`swap_if_newer`; raises as it."""
        self.swap_if_newer()

    def refresh_now(self) -> None:
        """Both jobs once, in this thread (start-up, before serving)."""
        self.refresh_status()
        self.swap_if_newer()

    def _after_status(self, crl_changed: bool) -> None:
        if crl_changed:
            self._swap_job.request()

    def _on_notified(self, kinds: set[Notification]) -> None:
        self._status_job.request()
        if Notification.CRL in kinds:  # no need to wait for the status job's CRL check
            self._swap_job.request()

    def request_refresh(self) -> None:
        """Run the status job (and a swap if needed) soon; event loop thread only."""
        self._status_job.request()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self._status_job.request()

    def start(self) -> None:
        """Listen for sibling notifications and start polling (in the running loop)."""
        loop = asyncio.get_running_loop()
        if self.notifier is not None:
            self.notifier.attach(loop, self._on_notified)
        self._poller = loop.create_task(self._poll())
        self.services.revocation_status_current = self.is_current

    async def aclose(self) -> None:
        """Stop polling and listening, close the notifier (its socket file goes)."""
        self.services.revocation_status_current = lambda: False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self.notifier is not None:
            self.notifier.close()
        await self._status_job.aclose()
        await self._swap_job.aclose()


def notify_directory(settings: Settings) -> Path:
    """Where sibling workers of this instance meet: ``<EHRCA_VAR_DIR>/run/notify``."""
    return settings.var_dir / "run" / "notify"


def open_notifier(settings: Settings) -> WorkerNotifier | None:
    """This worker's :class:`api.notify.WorkerNotifier`, bound; ``None`` when
    ``EHRCA_WORKER_NOTIFY`` is off or the directory cannot be used (logged: the poll
    still keeps the listener correct, only slower)."""
    if not settings.worker_notify:
        return None
    notifier = WorkerNotifier(notify_directory(settings))
    try:
        notifier.open()
    except OSError as exc:
        log.warning(
            "worker notifications off (%s); other workers' revocations are seen by "
            "polling every %s s",
            exc,
            settings.status_poll_seconds,
        )
        return None
    return notifier


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
    # Bind before the first refresh: a revocation committed after that refresh read
    # the database is announced to a socket that already exists.
    notifier = open_notifier(settings)
    sync: ListenerSync | None = None
    running: list[asyncio.Task[None]] = []
    try:
        holder = SSLContextHolder(build_mtls_context(services))
        sync = ListenerSync(
            services, holder, notifier=notifier, poll_seconds=settings.status_poll_seconds
        )
        sync.refresh_now()
        sync.connect()
        sync.start()
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
        await asyncio.gather(
            http_server.serve(sockets=[http_socket]), mtls_server.serve(sockets=[mtls_socket])
        )
    finally:
        for job in running:
            job.cancel()
        for job in running:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        if sync is not None:
            await sync.aclose()
        elif notifier is not None:
            notifier.close()
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

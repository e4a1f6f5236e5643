"""The fast path of ``POST .../service-locations/{n}/certificate`` with a CSR: async, the
sub-millisecond CPU work inline on the event loop, the writes group-committed.

Per request, on the event loop (no thread hop): the CSR checks (``issuance.csr``), one
``SELECT`` for token, application, location, download code, block list and active
issuing CA (``registration.collection``, on a pooled driver connection), the
idempotency replay look-up when an ``Idempotency-Key`` is given, and pipeline steps
1-4 (request checks, build, certificate checks over the throwaway-signed draft, pkilint
when configured). The errors, and their
order, are those of the ordinary path (``issuance.service.collect_with_csr`` behind
``get_application``/``approved_location``).

Then the request joins this process's batch: one thread per process runs
``issuance.batch.collect_batch`` over every collection that arrived while the
previous batch ran (at most :data:`MAX_BATCH`), so N concurrent collections cost two
commits instead of 3N, and one head lock of the audit chain instead of N. A response
leaves only after the commit that stored its certificate. No timer: a lone request is
committed at once. A batch whose transaction a concurrent one aborts (PostgreSQL
deadlock or serialization failure, SQLite lock timeout) is run again, then each
collection alone; one that still cannot get through answers 503 ``database_busy`` with
``Retry-After``, with nothing of it kept (never a 500).

Per-process caches (the CA does not change per request): the issuing CA's
:class:`ca.service.Signer` (row, parsed certificate, loaded key) and each issuer's chain.
Invalidation: every request's ``SELECT`` reads the id of the active issuing CA; when it
differs from the cached signer's (a new issuing CA was activated, in any process) the
signer is loaded again before the request is checked. Chains are keyed by authority id
and CA certificates never change under an id. Replacing a key file under the same row
needs a restart (as for the mTLS listener's key).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from api.services import Services
from ca.blocklist import spki_sha256
from ca.profiles import client_subject
from ca.service import (
    CANotInitialised,
    IdempotencyKeyTaken,
    Refusal,
    Signer,
    load_signer,
    prepare_certificate,
    record_refusal,
)
from issuance.batch import PendingCollection, StoredCertificate, collect_batch
from issuance.codes import hash_download_code
from issuance.csr import CheckedCSR, check_csr
from issuance.errors import (
    DownloadCodeExpired,
    DownloadCodeInvalid,
    DownloadCodeUsed,
    IssuanceError,
)
from issuance.service import (
    CLIENT_PROFILE,
    CollectedCertificate,
    Supersession,
    blocked_key_error,
    issuer_chain,
    replay_collection,
    scoped_idempotency_key,
)
from registration.collection import collection_target
from registration.errors import NotAuthenticated

#: Most collections committed together.
MAX_BATCH = 64


@dataclass(frozen=True, slots=True)
class FastCollected:
    """A collected (or replayed) certificate, ready for the response."""

    serial_number: str
    certificate: x509.Certificate
    chain_pem: str
    ignored: tuple[str, ...] = ()
    supersedes: tuple[Supersession, ...] = ()


Job = tuple[PendingCollection, Signer, "asyncio.Future[StoredCertificate]"]


@dataclass
class _LoopQueue:
    pending: list[Job] = field(default_factory=list)
    running: bool = False
    task: asyncio.Task[None] | None = None


class CSRCollector:
    """One per process (see the module docstring).

    Args:
        services: the process's services; its session factory, key store and issuance
            context (profiles, CA configuration, linter) are read on every request.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ehrca-issue")
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = (
            weakref.WeakKeyDictionary()
        )
        self._signer: Signer | None = None
        self._chains: dict[int, str] = {}

    def close(self) -> None:
        """Stop the batch thread (after the batch in progress)."""
        self._executor.shutdown(wait=True)

    # -- caches -------------------------------------------------------------------

    def _signer_for(self, issuing_ca_id: int | None) -> Signer:
        if issuing_ca_id is None:
            raise CANotInitialised("the CA is not initialised; run `ehrca init`")
        signer = self._signer
        if signer is None or signer.authority.id != issuing_ca_id:
            with self._services.sessions() as session:
                signer = self._signer = load_signer(session, self._services.keystore)
        return signer

    def _chain_pem(self, issuer_id: int) -> str:
        pem = self._chains.get(issuer_id)
        if pem is None:
            with self._services.sessions() as session:
                chain = issuer_chain(session, issuer_id)
            pem = self._chains[issuer_id] = "".join(
                c.public_bytes(serialization.Encoding.PEM).decode() for c in chain
            )
        return pem

    # -- the request ----------------------------------------------------------------

    async def collect(
        self,
        *,
        token: str | None,
        reference: str,
        number: int,
        download_code: str,
        csr: bytes,
        idempotency_key: str | None,
        now: dt.datetime,
    ) -> FastCollected | None:
        """Collect with a CSR; ``None`` when the token is not an applicant's (the caller
        takes the ordinary path, which answers ``applicant_only``).

        Raises:
            The errors of ``issuance.service.collect_with_csr`` and of the look-ups
            before it (``NotAuthenticated``, ``ApplicationNotFound``, ...), in the same
            order.
        """
        if not token:
            raise NotAuthenticated("a bearer token is required (POST /api/v1/auth/token)")
        checked: CheckedCSR | None = None
        csr_error: IssuanceError | None = None
        try:
            checked = check_csr(csr)
        except IssuanceError as exc:
            csr_error = exc
        target = collection_target(
            self._services.engine,
            token_sha256=hashlib.sha256(token.encode("utf-8", "replace")).hexdigest(),
            reference=reference,
            number=number,
            code_sha256=hash_download_code(download_code),
            spki_sha256=spki_sha256(checked.public_key) if checked else b"",
            now=now,
        )
        if target.location is None:
            return None
        location = target.location
        if csr_error is not None:
            raise csr_error
        assert checked is not None
        scoped = scoped_idempotency_key(location, idempotency_key)
        if scoped is not None:
            with self._services.sessions() as session:
                replayed = self._replay(session, scoped, checked)
            if replayed is not None:
                return replayed
        if target.key_blocked:
            raise blocked_key_error()
        signer = self._signer_for(target.issuing_ca_id)
        code = target.code
        if code is None or code.service_location_id != location.service_location_id:
            raise DownloadCodeInvalid("download code is not valid for this service location")
        if code.used:
            raise DownloadCodeUsed("download code has been used already")
        if now >= code.expires_at:
            raise DownloadCodeExpired("download code has expired; ask for a new one")
        chain_pem = self._chain_pem(signer.authority.id)
        ctx = self._services.issuance
        prepared = prepare_certificate(
            signer,
            ctx.profiles[CLIENT_PROFILE],
            subject=client_subject(
                provider_name_en=location.provider_name_en,
                provider_name_zh=location.provider_name_zh,
                location_name_en=location.location_name_en,
                location_name_zh=location.location_name_zh,
                location_identifier=location.identifier,
            ),
            public_key=checked.public_key,
            now=now,
            config=ctx.config,
            subject_alt_names=(location.uri(ctx.config.identity_base_uri),),
            linter=ctx.linter,
        )
        if isinstance(prepared, Refusal):
            await self._run(self._refuse, prepared, location.provider_reference, now)
            raise prepared.error
        try:
            stored = await self._submit(
                PendingCollection(location, download_code, scoped, prepared, now),
                signer,
            )
        except (DownloadCodeUsed, IdempotencyKeyTaken):
            # A concurrent repeat with the same Idempotency-Key may have won the race.
            with self._services.sessions() as session:
                replayed = self._replay(session, scoped, checked)
            if replayed is not None:
                return replayed
            raise
        return FastCollected(
            stored.serial_number,
            stored.certificate,
            chain_pem,
            ignored=checked.ignored,
            supersedes=stored.supersedes,
        )

    def _replay(
        self, session: Session, scoped: str | None, checked: CheckedCSR
    ) -> FastCollected | None:
        found: CollectedCertificate | None = replay_collection(session, scoped, checked.public_key)
        if found is None:
            return None
        return FastCollected(
            found.record.serial_number,
            found.certificate,
            self._chain_pem(found.record.issuer_id),
        )

    def _refuse(self, refusal: Refusal, actor: str, now: dt.datetime) -> None:
        with self._services.sessions() as session:
            record_refusal(session, refusal.error, refusal.request, actor=actor, now=now)

    async def _run(self, fn: Callable[..., None], *args: object) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- the batch ------------------------------------------------------------------

    async def _submit(self, item: PendingCollection, signer: Signer) -> StoredCertificate:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoredCertificate] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _LoopQueue()
        queue.pending.append((item, signer, future))
        if not queue.running:
            queue.running = True
            queue.task = loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _LoopQueue) -> None:
        loop = asyncio.get_running_loop()
        try:
            while queue.pending:
                jobs = queue.pending[:MAX_BATCH]
                del queue.pending[:MAX_BATCH]
                try:
                    results: list[StoredCertificate | Exception] = await loop.run_in_executor(
                        self._executor, self._batch, [(item, signer) for item, signer, _ in jobs]
                    )
                except Exception as exc:  # the whole batch failed (database error)
                    results = [exc] * len(jobs)
                for (_, _, future), result in zip(jobs, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            queue.running = False

    def _batch(
        self, items: list[tuple[PendingCollection, Signer]]
    ) -> list[StoredCertificate | Exception]:
        """Run in the batch thread: one :func:`issuance.batch.collect_batch` per signer
        (one, unless the issuing CA changed while the batch gathered). A transaction
        conflict is retried there and ends as that collection's ``DatabaseBusy`` (503)."""
        results: list[StoredCertificate | Exception | None] = [None] * len(items)
        signers = {id(signer): signer for _, signer in items}
        for key, signer in signers.items():
            indexes = [i for i, (_, s) in enumerate(items) if id(s) == key]
            done = collect_batch(self._services.sessions, signer, [items[i][0] for i in indexes])
            for i, result in zip(indexes, done, strict=True):
                results[i] = result
        return [r if r is not None else RuntimeError("not processed") for r in results]

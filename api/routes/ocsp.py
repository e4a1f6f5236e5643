"""The OCSP responder (RFC 6960) at the URL written into certificates' AIA
(``PkiUrls.ocsp``: ``/pki/ocsp/{ca_name}``), plain HTTP, no authentication.

- ``POST /pki/ocsp/{ca_name}`` with the DER ``OCSPRequest`` as body (RFC 6960 A.1.1;
  clients send ``Content-Type: application/ocsp-request``, the body is read whatever
  the type says);
- ``GET /pki/ocsp/{ca_name}/{base64 of the DER request}`` (RFC 6960 A.1.1, the
  base64 URL-encoded; ``+``/``/`` or the URL-safe ``-``/``_``, padding optional).

Every answer is ``200 application/ocsp-response``, also for garbage
(``malformedRequest``), another issuer or an unknown CA name (``unauthorized``) and
internal failures (``tryLater``): OCSP clients read the response status, not HTTP's.
Successful GET answers without nonce are cacheable (RFC 5019 6.2): ``ETag``,
``Last-Modified`` (thisUpdate), ``Expires`` (nextUpdate) and ``Cache-Control:
max-age`` of at most 300 s and never past nextUpdate; everything else is ``no-store``.

The fast path (issue 6: at least 5,000 responses/s from one worker)
    :class:`OCSPFastPath` is a pure ASGI middleware that ``create_app`` puts outermost,
    in front of FastAPI's routing, dependencies and the other middleware. For
    ``GET``/``POST`` under ``/pki/ocsp/`` it looks the request up in the process's
    :class:`revocation.ocsp_cache.OCSPMemoryCache` (``Services.ocsp_cache``) and, on a
    hit, sends the cached pre-signed DER itself, in the event loop: no database, no
    thread pool, no signature. Everything else (a miss, a nonce, garbage, another
    method, a body without ``Content-Length`` or over
    :data:`revocation.ocsp.MAX_REQUEST_BYTES`, any error in the fast path) falls
    through, unchanged, to the routes below, which answer from the database and fill
    the cache. The headers of a hit are those the route would send for the same
    answer (:func:`cache_control`, :func:`validators`). The cache's rules (what is
    cached, eviction on revocation, nextUpdate, memory bound) are in
    :mod:`revocation.ocsp_cache`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import logging
from email.utils import format_datetime

from fastapi import APIRouter, FastAPI, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import ServicesDep, SessionDep
from api.services import Services
from revocation.ocsp import MAX_REQUEST_BYTES, CertStatus
from revocation.ocsp_cache import CachedResponse
from revocation.responder import OCSPAnswer, answer

router = APIRouter(prefix="/pki/ocsp", tags=["pki"])

OCSP_RESPONSE = "application/ocsp-response"
#: Upper bound of ``max-age`` (seconds): a cache re-asks at least this often.
MAX_AGE_SECONDS = 300
#: Path prefix of the responder URLs (``PkiUrls.ocsp``).
PREFIX = "/pki/ocsp/"

log = logging.getLogger("ehrca.ocsp")


def decode_get_request(encoded: str) -> bytes:
    """The DER request from the last path segment(s) of a GET (RFC 6960 A.1.1).

    A ``+`` turned into a space by a form decoder is put back; the URL-safe alphabet
    and missing padding are accepted. Returns ``b""`` (which the responder answers
    ``malformedRequest``) when it is not base64.
    """
    text = encoded.strip().replace(" ", "+").replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def cache_control(next_update: dt.datetime, now: dt.datetime) -> str:
    """``Cache-Control`` of a cacheable GET answer (RFC 5019 6.2): ``max-age`` at most
    :data:`MAX_AGE_SECONDS` and never past ``next_update`` (whole seconds, not negative)."""
    max_age = max(0, min(MAX_AGE_SECONDS, int((next_update - now).total_seconds())))
    return f"public, max-age={max_age}, no-transform, must-revalidate"


def validators(der: bytes, this_update: dt.datetime, next_update: dt.datetime) -> dict[str, str]:
    """``ETag`` (first 128 bits of the SHA-256 of the DER), ``Last-Modified``
    (thisUpdate) and ``Expires`` (nextUpdate) of a cacheable GET answer (RFC 5019 6.2)."""
    return {
        "ETag": '"' + hashlib.sha256(der).hexdigest()[:32] + '"',
        "Last-Modified": format_datetime(this_update, usegmt=True),
        "Expires": format_datetime(next_update, usegmt=True),
    }


def _response(result: OCSPAnswer, *, now: dt.datetime, cacheable: bool) -> Response:
    headers = {"Cache-Control": "no-store"}
    if (
        cacheable
        and not result.nonce
        and result.cert_status in (CertStatus.GOOD, CertStatus.REVOKED)
        and result.this_update is not None
        and result.next_update is not None
    ):
        headers = {
            "Cache-Control": cache_control(result.next_update, now),
            **validators(result.der, result.this_update, result.next_update),
        }
    return Response(result.der, media_type=OCSP_RESPONSE, headers=headers)


def _answer(session: Session, services: Services, ca_name: str, der: bytes) -> OCSPAnswer:
    return answer(
        session, services.keystore, services.ocsp_policy, ca_name, der, now=services.clock()
    )


def _remember(services: Services, ca_name: str, der: bytes, result: OCSPAnswer, epoch: int) -> None:
    """Put a pre-signed kind of answer into the memory cache (``epoch``: taken before
    the database was read, see :meth:`OCSPMemoryCache.put`)."""
    if (
        result.cacheable_until is None
        or result.cert_status is None
        or result.this_update is None
        or result.next_update is None
        or result.issuer_id is None
        or result.serial_hex is None
        or result.cert_id is None
    ):
        return
    headers = tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in validators(result.der, result.this_update, result.next_update).items()
    )
    entry = CachedResponse(
        result.der,
        result.issuer_id,
        result.serial_hex,
        result.cert_status,
        result.this_update,
        result.next_update,
        result.cacheable_until,
        headers,
    )
    services.ocsp_cache.put(ca_name, der, result.cert_id, entry, epoch=epoch, now=services.clock())


async def _answer_and_remember(
    session: Session, services: Services, ca_name: str, der: bytes
) -> OCSPAnswer:
    epoch = services.ocsp_cache.epoch  # before the database is read
    result = await run_in_threadpool(_answer, session, services, ca_name, der)
    _remember(services, ca_name, der, result, epoch)
    return result


@router.post("/{ca_name}")
async def ocsp_post(
    ca_name: str, request: Request, session: SessionDep, services: ServicesDep
) -> Response:
    """An OCSP request in the body (DER)."""
    der = await request.body()
    result = await _answer_and_remember(session, services, ca_name, der)
    return _response(result, now=services.clock(), cacheable=False)


@router.get("/{ca_name}/{encoded:path}")
async def ocsp_get(
    ca_name: str, encoded: str, session: SessionDep, services: ServicesDep
) -> Response:
    """An OCSP request base64-encoded in the URL (RFC 6960 A.1.1)."""
    result = await _answer_and_remember(session, services, ca_name, decode_get_request(encoded))
    return _response(result, now=services.clock(), cacheable=True)


# ----------------------------------------------------------------------------- fast path

_CONTENT_TYPE = (b"content-type", OCSP_RESPONSE.encode())
_NO_STORE = (b"cache-control", b"no-store")
_MAX_AGE = dt.timedelta(seconds=MAX_AGE_SECONDS)
_T0 = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
#: The header of every hit with at least MAX_AGE_SECONDS left before nextUpdate.
_FULL_MAX_AGE = (b"cache-control", cache_control(_T0 + _MAX_AGE, _T0).encode())


class OCSPFastPath:
    """Pure ASGI middleware answering OCSP requests from the memory cache (see the
    module docstring); anything it does not answer goes to ``app`` untouched (a POST
    body it read is replayed).

    Args:
        app: the rest of the application (FastAPI's middleware stack and routes).
        services: the process's services (``ocsp_cache`` and ``clock`` are used).
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.cache = services.ocsp_cache
        self.clock = services.clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        rest = path[len(PREFIX) :]
        if method == "GET":
            ca_name, slash, encoded = rest.partition("/")
            if slash and ca_name and await self._hit(ca_name, decode_get_request(encoded), send):
                return
        elif method == "POST" and rest and "/" not in rest:
            try:
                body = await _read_small_body(scope, receive)
            except _Disconnected:  # nobody to answer
                return
            if body is not None:
                if await self._hit(rest, body, send, get=False):
                    return
                receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _hit(self, ca_name: str, der: bytes, send: Send, *, get: bool = True) -> bool:
        """Send the cached answer for ``der`` if there is a fresh one; False otherwise."""
        try:
            now = self.clock()
            entry = self.cache.lookup(ca_name, der, now)
            if entry is None:
                return False
            headers = [(b"content-length", str(len(entry.der)).encode()), _CONTENT_TYPE]
            if get:
                if entry.next_update - now >= _MAX_AGE:
                    headers.append(_FULL_MAX_AGE)
                else:
                    headers.append(
                        (b"cache-control", cache_control(entry.next_update, now).encode())
                    )
                headers.extend(entry.headers)
            else:
                headers.append(_NO_STORE)
        except Exception:  # the slow path answers (and says tryLater if it must)
            log.exception("OCSP fast path failed")
            return False
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": entry.der})
        return True


async def _read_small_body(scope: Scope, receive: Receive) -> bytes | None:
    """The whole body of a request with a ``Content-Length`` of at most
    :data:`MAX_REQUEST_BYTES`; ``None`` (nothing read) for any other request."""
    length = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            length = value
            break
    if (
        length is None
        or len(length) > 9  # int() of a huge digit string is refused (and costly)
        or not length.isdigit()
        or int(length) > MAX_REQUEST_BYTES
    ):
        return None
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Disconnected(Exception):
    """The client went away before its whole body arrived (nobody to answer)."""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first yields ``body`` as the whole request, then defers to
    ``receive`` (for ``http.disconnect``)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class OCSPFastPathApp(FastAPI):
    """The FastAPI application with :class:`OCSPFastPath` outermost: every request is
    offered to the fast path before anything of FastAPI's (native telemetry,
    ``ServerErrorMiddleware``, user middleware, routing), which costs about 7 µs of the
    ~100 µs a cache hit takes in all. Built like :class:`fastapi.FastAPI`; the fast
    path uses ``app.state.services`` (``create_app`` sets it) from the first request
    on. A request answered by the fast path is not seen by FastAPI's telemetry or
    middleware; every other request is.
    """

    _ocsp_fast_path: OCSPFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self._ocsp_fast_path
        if fast is None:
            fast = self._ocsp_fast_path = OCSPFastPath(
                functools.partial(FastAPI.__call__, self), self.state.services
            )
        await fast(scope, receive, send)

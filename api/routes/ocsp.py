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
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from email.utils import format_datetime

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep, SessionDep
from revocation.ocsp import CertStatus
from revocation.responder import OCSPAnswer, answer

router = APIRouter(prefix="/pki/ocsp", tags=["pki"])

OCSP_RESPONSE = "application/ocsp-response"
#: Upper bound of ``max-age`` (seconds): a cache re-asks at least this often.
MAX_AGE_SECONDS = 300


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


def _response(result: OCSPAnswer, *, now: dt.datetime, cacheable: bool) -> Response:
    headers = {"Cache-Control": "no-store"}
    if (
        cacheable
        and not result.nonce
        and result.cert_status in (CertStatus.GOOD, CertStatus.REVOKED)
        and result.this_update is not None
        and result.next_update is not None
    ):
        max_age = max(0, min(MAX_AGE_SECONDS, int((result.next_update - now).total_seconds())))
        headers = {
            "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
            "ETag": '"' + hashlib.sha256(result.der).hexdigest()[:32] + '"',
            "Last-Modified": format_datetime(result.this_update, usegmt=True),
            "Expires": format_datetime(result.next_update, usegmt=True),
        }
    return Response(result.der, media_type=OCSP_RESPONSE, headers=headers)


def _answer(session: SessionDep, services: ServicesDep, ca_name: str, der: bytes) -> OCSPAnswer:
    return answer(
        session, services.keystore, services.ocsp_policy, ca_name, der, now=services.clock()
    )


@router.post("/{ca_name}")
async def ocsp_post(
    ca_name: str, request: Request, session: SessionDep, services: ServicesDep
) -> Response:
    """An OCSP request in the body (DER)."""
    der = await request.body()
    result = await run_in_threadpool(_answer, session, services, ca_name, der)
    return _response(result, now=services.clock(), cacheable=False)


@router.get("/{ca_name}/{encoded:path}")
def ocsp_get(ca_name: str, encoded: str, session: SessionDep, services: ServicesDep) -> Response:
    """An OCSP request base64-encoded in the URL (RFC 6960 A.1.1)."""
    result = _answer(session, services, ca_name, decode_get_request(encoded))
    return _response(result, now=services.clock(), cacheable=True)

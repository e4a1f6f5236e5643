"""Public PKI endpoints: CA certificates, CRLs and the list of issuers (plain HTTP,
no authentication, as RFC 5280 8 expects of repositories)."""

from __future__ import annotations

import datetime as dt
import hashlib
from email.utils import format_datetime
from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from api.deps import ServicesDep, SessionDep
from ca.errors import DomainError, ErrorCategory
from ca.models import CARole
from ca.serials import parse_serial_hex, serial_to_hex
from issuance.formats import CertificateFormat, export_record
from issuance.service import find_certificate
from revocation.models import PublishedCRL
from revocation.queries import authorities, authority_by_name
from revocation.service import served_crl

router = APIRouter(tags=["pki"])


class PkiNotFound(DomainError):
    """No such CA, CRL or certificate."""

    code = "not_found"
    category = ErrorCategory.NOT_FOUND


class IssuerOut(BaseModel):
    """One CA with the URLs that serve its certificate and CRL."""

    name: str
    role: str
    subject: str
    not_valid_before: dt.datetime
    not_valid_after: dt.datetime
    certificate_url: str
    crl_url: str
    crl_number: int
    ocsp_url: str | None = None


@router.get("/pki/issuers")
def list_issuers(session: SessionDep, services: ServicesDep) -> list[IssuerOut]:
    """Every CA of the hierarchy, root first."""
    urls = services.ca_config.urls
    return [
        IssuerOut(
            name=a.name,
            role=a.role.value,
            subject=x509.load_der_x509_certificate(a.certificate_der).subject.rfc4514_string(),
            not_valid_before=a.not_valid_before,
            not_valid_after=a.not_valid_after,
            certificate_url=urls.ca_certificate(a.name),
            crl_url=urls.crl(a.name),
            crl_number=a.crl_number,
            ocsp_url=urls.ocsp(a.name) if a.role is CARole.ISSUING else None,
        )
        for a in authorities(session)
    ]


@router.get("/pki/ca/{name}.crt")
def ca_certificate(name: str, session: SessionDep) -> Response:
    """The DER certificate of CA ``name`` (``application/pkix-cert``, RFC 2585)."""
    authority = authority_by_name(session, name)
    if authority is None:
        raise PkiNotFound(f"no CA called {name!r}")
    return Response(
        authority.certificate_der,
        media_type="application/pkix-cert",
        headers={"Cache-Control": "public, max-age=86400"},
    )


#: Upper bound of a CRL's ``Cache-Control: max-age`` (seconds): caches re-fetch at
#: least this often, so a revocation reaches them within minutes, not at nextUpdate.
CRL_MAX_AGE_SECONDS = 300


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: ``*`` or any listed entity tag equal to ``etag`` (weak
    comparison: a ``W/`` prefix is ignored)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _crl_response(
    row: PublishedCRL, ext: str, *, now: dt.datetime, if_none_match: str | None
) -> Response:
    """The CRL as DER (``.crl``) or PEM (``.pem``) with validators and a
    ``Cache-Control: max-age`` never reaching past nextUpdate (at most
    :data:`CRL_MAX_AGE_SECONDS`); ``304`` when ``If-None-Match`` names its ETag."""
    remaining = int((row.next_update - now).total_seconds())
    max_age = max(0, min(CRL_MAX_AGE_SECONDS, remaining))
    etag = '"' + hashlib.sha256(row.crl_der).hexdigest()[:32] + ("-pem" if ext == "pem" else "")
    etag += '"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(row.this_update, usegmt=True),
        "Expires": format_datetime(row.next_update, usegmt=True),
        "Cache-Control": f"public, max-age={max_age}",
    }
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    if ext == "pem":
        pem = x509.load_der_x509_crl(row.crl_der).public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file", headers=headers)
    return Response(row.crl_der, media_type="application/pkix-crl", headers=headers)


@router.get("/pki/crl/{name}.{ext}")
def crl(
    name: str,
    ext: Literal["crl", "pem"],
    session: SessionDep,
    services: ServicesDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """The newest full CRL of CA ``name``: DER ``application/pkix-crl`` (RFC 2585) at
    ``.crl``, PEM at ``.pem``. ``Cache-Control: max-age`` never reaches past nextUpdate;
    ``If-None-Match`` with the current ETag gives ``304``."""
    row = served_crl(session, name)
    if row is None:
        raise PkiNotFound(f"no CRL for {name[:64]!r}")
    return _crl_response(row, ext, now=services.clock(), if_none_match=if_none_match)


@router.get("/pki/crl/{name}/shard-{shard}.{ext}")
def crl_shard(
    name: str,
    shard: int,
    ext: Literal["crl", "pem"],
    session: SessionDep,
    services: ServicesDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """Partition ``shard`` of CA ``name``'s CRL (with ``EHRCA_CRL_SHARDS`` above 1; its
    issuingDistributionPoint names this URL, RFC 5280 5.2.5), as :func:`crl`."""
    row = served_crl(session, name, shard=shard)
    if row is None:
        raise PkiNotFound(f"no CRL partition {shard} for {name[:64]!r}")
    return _crl_response(row, ext, now=services.clock(), if_none_match=if_none_match)


@router.get("/api/v1/certificates/{serial}")
def certificate(
    serial: str,
    session: SessionDep,
    format: Annotated[Literal["pem", "der", "chain", "p7c"], Query()] = "pem",
) -> Response:
    """An issued certificate by serial number (40 hex digits): PEM, DER, ``chain`` (PEM
    of it, the issuing CA and the root) or ``p7c`` (PKCS#7 certs-only, the same three)."""
    try:
        serial_hex = serial_to_hex(parse_serial_hex(serial))
    except ValueError as exc:
        raise PkiNotFound(
            f"no certificate with serial number {serial!r}", code="certificate_not_found"
        ) from exc
    record = find_certificate(session, serial_hex)
    if record is None or record.certificate_der is None:
        raise PkiNotFound(
            f"no certificate with serial number {serial_hex}", code="certificate_not_found"
        )
    exported = export_record(session, record, CertificateFormat(format))
    return Response(exported.content, media_type=exported.media_type)

"""Public PKI endpoints: CA certificates, CRLs and the list of issuers (plain HTTP,
no authentication, as RFC 5280 8 expects of repositories)."""

from __future__ import annotations

import datetime as dt
import hashlib
from email.utils import format_datetime
from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from api.deps import ServicesDep, SessionDep
from ca.errors import DomainError, ErrorCategory
from ca.serials import parse_serial_hex, serial_to_hex
from issuance.service import find_certificate
from revocation.queries import authorities, authority_by_name
from revocation.service import latest_crl

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


@router.get("/pki/crl/{name}.{ext}")
def crl(
    name: str, ext: Literal["crl", "pem"], session: SessionDep, services: ServicesDep
) -> Response:
    """The newest CRL of CA ``name``: DER ``application/pkix-crl`` (RFC 2585) at ``.crl``,
    PEM at ``.pem``. ``Cache-Control: max-age`` never reaches past nextUpdate."""
    authority = authority_by_name(session, name)
    row = latest_crl(session, authority.id) if authority is not None else None
    if row is None:
        raise PkiNotFound(f"no CRL for {name!r}")
    now = services.clock()
    max_age = max(0, min(300, int((row.next_update - now).total_seconds())))
    headers = {
        "ETag": '"' + hashlib.sha256(row.crl_der).hexdigest()[:32] + '"',
        "Last-Modified": format_datetime(row.this_update, usegmt=True),
        "Expires": format_datetime(row.next_update, usegmt=True),
        "Cache-Control": f"public, max-age={max_age}",
    }
    if ext == "pem":
        pem = x509.load_der_x509_crl(row.crl_der).public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file", headers=headers)
    return Response(row.crl_der, media_type="application/pkix-crl", headers=headers)


@router.get("/api/v1/certificates/{serial}")
def certificate(
    serial: str,
    session: SessionDep,
    format: Annotated[Literal["pem", "der"], Query()] = "pem",
) -> Response:
    """An issued certificate by serial number (40 hex digits), PEM or DER."""
    try:
        serial_hex = serial_to_hex(parse_serial_hex(serial))
    except ValueError as exc:
        raise PkiNotFound(f"no certificate with serial number {serial!r}") from exc
    record = find_certificate(session, serial_hex)
    if record is None or record.certificate_der is None:
        raise PkiNotFound(f"no certificate with serial number {serial_hex}")
    if format == "der":
        return Response(record.certificate_der, media_type="application/pkix-cert")
    pem = x509.load_der_x509_certificate(record.certificate_der).public_bytes(
        serialization.Encoding.PEM
    )
    return Response(pem, media_type="application/x-pem-file")

"""Applicant routes: the five steps, submit, review, and certificate collection."""

from __future__ import annotations

from typing import Annotated, Literal

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Form, Header, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.collector import CSRCollector
from api.deps import CurrentPrincipal, ServicesDep, SessionDep, bearer_token, get_principal
from api.routes.replacement import revoke_replaced_on_collection
from api.services import Services
from ca.keys import KeyType
from issuance.pkcs12 import PKCS12Profile
from issuance.service import Supersession, collect_with_csr, collect_with_generated_key
from registration import service
from registration.accounts import Principal
from registration.errors import Forbidden, RegistrationError
from registration.schemas import (
    ApplicationCreate,
    ApplicationOut,
    DocumentOut,
    ProviderDetails,
    ServiceLocationIn,
    Strict,
    UserAdminIn,
)

router = APIRouter(prefix="/api/v1/applications", tags=["applications"])


class ApplicationCreated(BaseModel):
    """The new application's reference (the username for ``/auth/token``)."""

    reference: str
    status: str


class CollectIn(Strict):
    """Collect a certificate: ``download_code`` plus either ``csr`` (PKCS#10 PEM) or
    ``pkcs12_password`` (12+ characters) for a key made by the service."""

    download_code: str = Field(min_length=1, max_length=64)
    csr: str | None = Field(None, max_length=32 * 1024)
    pkcs12_password: str | None = Field(None, max_length=256)
    pkcs12_profile: Literal["modern", "legacy"] = "modern"
    key_type: Literal["ec-p256", "rsa-2048", "rsa-3072"] = "ec-p256"


class CertificateOut(BaseModel):
    """A collected certificate (CSR path)."""

    serial_number: str
    certificate_pem: str
    chain_pem: str
    not_valid_before: str
    not_valid_after: str
    ignored: list[str]


class CollectionMethodError(RegistrationError):
    """Neither or both of ``csr`` and ``pkcs12_password`` were given."""

    code = "collection_method_invalid"


def _require_applicant(principal: CurrentPrincipal) -> None:
    if principal.kind != "applicant":
        raise Forbidden("only the applicant can do this", code="applicant_only")


@router.post("", status_code=201)
def create_application(
    data: ApplicationCreate, session: SessionDep, services: ServicesDep
) -> ApplicationCreated:
    """Open a draft application (no login needed; the password protects it)."""
    application = service.create_application(session, data, now=services.clock())
    return ApplicationCreated(reference=application.reference, status=application.status.value)


@router.get("/{reference}")
def read_application(
    reference: str, session: SessionDep, principal: CurrentPrincipal
) -> ApplicationOut:
    """Review: every step, what is missing, status, decision reason, history."""
    application = service.get_application(session, reference, principal)
    return service.application_view(session, application)


@router.put("/{reference}/provider")
def put_provider(
    reference: str, data: ProviderDetails, session: SessionDep, principal: CurrentPrincipal
) -> ApplicationOut:
    """Step 1: provider details."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    service.set_provider(session, application, data)
    return service.application_view(session, application)


@router.put("/{reference}/user-admins")
def put_user_admins(
    reference: str,
    data: Annotated[list[UserAdminIn], Field(min_length=1, max_length=service.MAX_USER_ADMINS)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> ApplicationOut:
    """Step 2: user administrators (a JSON array; replaces the list)."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    service.set_user_admins(session, application, data)
    return service.application_view(session, application)


@router.put("/{reference}/service-locations")
def put_service_locations(
    reference: str,
    data: Annotated[list[ServiceLocationIn], Field(min_length=1, max_length=service.MAX_LOCATIONS)],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> ApplicationOut:
    """Step 3: service locations (a JSON array; replaces the list; ids 1, 2, ...)."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    service.set_service_locations(session, application, data)
    return service.application_view(session, application)


@router.post("/{reference}/documents", status_code=201)
def upload_document(
    reference: str,
    file: UploadFile,
    kind: Annotated[str, Form(max_length=64)],
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
    response: Response,
) -> DocumentOut:
    """Step 4: upload one supporting document (multipart ``file`` and ``kind``).
    201 for a new document, 200 when the same bytes were uploaded before."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    limits = services.document_limits
    content = file.file.read(limits.max_bytes + 1)
    document, created = service.add_document(
        session,
        application,
        kind=kind,
        filename=file.filename or "document",
        content=content,
        store=services.settings.documents_dir,
        limits=limits,
        now=services.clock(),
    )
    if not created:
        response.status_code = 200
    return DocumentOut.model_validate(document, from_attributes=True)


@router.post("/{reference}/submit")
def submit_application(
    reference: str, session: SessionDep, services: ServicesDep, principal: CurrentPrincipal
) -> ApplicationOut:
    """Step 5: submit (422 ``application_incomplete`` with the missing list)."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    service.submit(session, application, principal, now=services.clock())
    return service.application_view(session, application)


def _collector(request: Request) -> CSRCollector:
    """This process's :class:`api.collector.CSRCollector` (made on first use)."""
    state = request.app.state
    collector: CSRCollector | None = getattr(state, "csr_collector", None)
    if collector is None:
        collector = state.csr_collector = CSRCollector(state.services)
    return collector


@router.post(
    "/{reference}/service-locations/{location_id}/certificate",
    status_code=201,
    response_model=CertificateOut,
    responses={201: {"content": {"application/x-pkcs12": {}}}},
)
async def collect_certificate(
    reference: str,
    location_id: int,
    data: CollectIn,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> CertificateOut | Response:
    """Collect a service location's certificate with its one-time download code.

    With ``csr``: 201 JSON (certificate and chain PEM, what the CSR asked for that was
    ignored). With ``pkcs12_password``: 201 ``application/x-pkcs12`` (key made here,
    never stored). An ``Idempotency-Key`` header makes a CSR collection repeatable.

    A CSR collection by an applicant takes :class:`api.collector.CSRCollector` (async,
    group commit); everything else the ordinary path in the thread pool. Both answer the
    same errors in the same order.
    """
    services: Services = request.app.state.services
    if data.csr is not None and data.pkcs12_password is None:
        fast = await _collector(request).collect(
            token=bearer_token(request),
            reference=reference,
            number=location_id,
            download_code=data.download_code,
            csr=data.csr.encode("utf-8"),
            idempotency_key=idempotency_key,
            now=services.clock(),
        )
        if fast is not None:
            if fast.supersedes:
                await run_in_threadpool(_revoke_superseded, services, fast.supersedes)
            # The same document as CertificateOut, without validating what was just built.
            return JSONResponse(
                {
                    "serial_number": fast.serial_number,
                    "certificate_pem": fast.certificate.public_bytes(
                        serialization.Encoding.PEM
                    ).decode(),
                    "chain_pem": fast.chain_pem,
                    "not_valid_before": fast.certificate.not_valid_before_utc.isoformat(),
                    "not_valid_after": fast.certificate.not_valid_after_utc.isoformat(),
                    "ignored": list(fast.ignored),
                },
                status_code=201,
            )
    return await run_in_threadpool(
        _collect_in_thread, services, request, reference, location_id, data, idempotency_key
    )


def _revoke_superseded(services: Services, supersedes: tuple[Supersession, ...]) -> None:
    with services.sessions() as session:
        revoke_replaced_on_collection(session, services, supersedes)


def _collect_in_thread(
    services: Services,
    request: Request,
    reference: str,
    location_id: int,
    data: CollectIn,
    idempotency_key: str | None,
) -> CertificateOut | Response:
    with services.sessions() as session:
        principal = get_principal(request, session, services)
        return _collect(session, services, principal, reference, location_id, data, idempotency_key)


def _collect(
    session: Session,
    services: Services,
    principal: Principal,
    reference: str,
    location_id: int,
    data: CollectIn,
    idempotency_key: str | None,
) -> CertificateOut | Response:
    """The ordinary path: PKCS#12 downloads, officers and people (refused), both or
    neither of ``csr`` and ``pkcs12_password``."""
    _require_applicant(principal)
    if (data.csr is None) == (data.pkcs12_password is None):
        raise CollectionMethodError("give exactly one of csr or pkcs12_password")
    application = service.get_application(session, reference, principal)
    location = service.approved_location(application, location_id)
    now = services.clock()
    if data.csr is not None:
        collected = collect_with_csr(
            session,
            services.issuance,
            location,
            download_code=data.download_code,
            csr=data.csr.encode("utf-8"),
            now=now,
            idempotency_key=idempotency_key,
        )
        revoke_replaced_on_collection(session, services, collected.supersedes)
        pem = serialization.Encoding.PEM
        return CertificateOut(
            serial_number=collected.record.serial_number,
            certificate_pem=collected.certificate.public_bytes(pem).decode(),
            chain_pem="".join(c.public_bytes(pem).decode() for c in collected.chain),
            not_valid_before=collected.certificate.not_valid_before_utc.isoformat(),
            not_valid_after=collected.certificate.not_valid_after_utc.isoformat(),
            ignored=list(collected.ignored),
        )
    assert data.pkcs12_password is not None
    collected = collect_with_generated_key(
        session,
        services.issuance,
        location,
        download_code=data.download_code,
        password=data.pkcs12_password,
        profile=PKCS12Profile(data.pkcs12_profile),
        key_type=KeyType(data.key_type),
        now=now,
        idempotency_key=idempotency_key,
    )
    revoke_replaced_on_collection(session, services, collected.supersedes)
    assert collected.pkcs12 is not None
    return Response(
        content=collected.pkcs12,
        status_code=201,
        media_type="application/x-pkcs12",
        headers={
            "Content-Disposition": f'attachment; filename="{location.identifier}.p12"',
            "Cache-Control": "no-store",
            "X-Serial-Number": collected.record.serial_number,
        },
    )

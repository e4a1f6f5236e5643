"""Supporting documents read back: the applicant and reviewing officers only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from registration import service
from registration.documents import open_document

router = APIRouter(prefix="/api/v1/applications", tags=["applications"])


@router.get(
    "/{reference}/documents/{document_id}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/pdf": {}, "image/jpeg": {}, "image/png": {}},
            "description": "the stored file, as an attachment",
        }
    },
)
def read_document(
    reference: str,
    document_id: int,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> FileResponse:
    """Stream a supporting document with the content type recognised at upload and
    ``Content-Disposition: attachment`` (never rendered inline). Readable by the
    applicant and by reviewers and admins; anyone else gets 404
    ``application_not_found`` (or 403 ``role_not_allowed`` for a security officer)."""
    application = service.get_application(session, reference, principal)
    document, path = open_document(
        application, document_id, principal, store=services.settings.documents_dir
    )
    return FileResponse(
        path,
        media_type=document.content_type,
        filename=document.filename,
        content_disposition_type="attachment",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )

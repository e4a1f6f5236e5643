"""Reading supporting documents back: only the applicant and reviewing officers.

Uploads live in ``registration.service.add_document`` (sniffed with puremagic, stored
content-addressed by SHA-256 under ``var/documents/ab/abcdef…``); this module finds a
stored file again. The caller has already resolved the application with
``registration.service.get_application`` (its applicant, or an officer).
"""

from __future__ import annotations

from pathlib import Path

from registration.accounts import Principal
from registration.errors import DocumentNotFound
from registration.models import Application, Document

#: Officer roles that may read documents (reviewers decide on them; admins oversee).
#: Security officers revoke certificates and have no need to read them.
DOCUMENT_READERS = ("reviewer", "admin")


def stored_path(store: Path, sha256: str) -> Path:
    """Where the content with ``sha256`` (64 lowercase hex digits) is stored."""
    return store / sha256[:2] / sha256


def open_document(
    application: Application, document_id: int, principal: Principal, *, store: Path
) -> tuple[Document, Path]:
    """The document ``document_id`` of ``application`` and the path of its content.

    Raises:
        registration.errors.Forbidden: an officer whose role may not read documents.
        DocumentNotFound: no such document on this application, or its stored content
            is missing (never a path outside ``store``: the name on disk is the digest).
    """
    if principal.is_officer:
        principal.require_role(*DOCUMENT_READERS)
    document = next((d for d in application.documents if d.id == document_id), None)
    if document is None:
        raise DocumentNotFound(f"application {application.reference} has no document {document_id}")
    path = stored_path(store, document.sha256)
    if not path.is_file():
        raise DocumentNotFound(f"the content of document {document_id} is not in the store")
    return document, path

"""Revocation refusals, each with a stable code."""

from __future__ import annotations

from ca.errors import DomainError, ErrorCategory


class RevocationError(DomainError):
    """Base of revocation refusals."""

    code = "revocation_error"


class CertificateNotFound(RevocationError):
    """No certificate with that serial number was issued by this CA."""

    code = "certificate_not_found"
    category = ErrorCategory.NOT_FOUND


class AlreadyRevoked(RevocationError):
    """The certificate is revoked already; ``detail`` carries the existing revocation."""

    code = "certificate_already_revoked"
    category = ErrorCategory.CONFLICT


class ReasonNotAllowed(RevocationError):
    """The caller's role may not use that reason code (see ``revocation.policy``)."""

    code = "revocation_reason_not_allowed"
    category = ErrorCategory.FORBIDDEN


class InvalidRevocationRequest(RevocationError):
    """Unknown reason name, invalidity date in the future, and the like."""

    code = "invalid_revocation_request"
    category = ErrorCategory.INVALID

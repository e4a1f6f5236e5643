"""The error base shared by every domain package (``ca`` is the bottom of the stack).

Domain code raises :class:`DomainError` subclasses carrying a stable ``code`` and an
:class:`ErrorCategory`; only ``api/`` turns them into RFC 9457 problem documents
(Boulder's ``berrors`` do the same). Messages are for humans and never contain
secrets (passwords, download codes, private keys).
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCategory(enum.StrEnum):
    """What kind of failure; ``api/`` maps each to one HTTP status."""

    INVALID = "invalid"  # 422: the request is well-formed but breaks a rule
    BAD_REQUEST = "bad_request"  # 400: unparseable input (bad CSR, bad PEM)
    UNAUTHORIZED = "unauthorized"  # 401: no or bad credentials
    FORBIDDEN = "forbidden"  # 403: authenticated but not allowed
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409: state does not allow it (already revoked, already used)
    GONE = "gone"  # 410: expired (download code past its 60 days)
    TOO_LARGE = "too_large"  # 413
    UNAVAILABLE = "unavailable"  # 503: the CA is not initialised


class DomainError(Exception):
    """A refusal the client can act on.

    Args:
        message: human-readable, names the rule that refused.
        code: stable machine-readable code (defaults to the class's ``code``).
        detail: extra JSON-serialisable members for the problem document.
    """

    code: str = "error"
    category: ErrorCategory = ErrorCategory.INVALID

    def __init__(self, message: str, *, code: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.detail = detail

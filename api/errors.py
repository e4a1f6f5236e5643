"""RFC 9457 problem documents for every error the API returns.

Domain errors carry a stable ``code`` and a category (``ca.errors``); this module
alone maps categories to HTTP statuses. Validation errors never echo the input
(it may hold a password or a download code). Anything unexpected is a 500 with no
detail; the traceback goes to the server log only.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ca.errors import DomainError, ErrorCategory
from db.session import is_transaction_conflict

log = logging.getLogger("ehrca.api")

PROBLEM_JSON = "application/problem+json"

STATUS_BY_CATEGORY: dict[ErrorCategory, int] = {
    ErrorCategory.INVALID: 422,
    ErrorCategory.BAD_REQUEST: 400,
    ErrorCategory.UNAUTHORIZED: 401,
    ErrorCategory.FORBIDDEN: 403,
    ErrorCategory.NOT_FOUND: 404,
    ErrorCategory.CONFLICT: 409,
    ErrorCategory.GONE: 410,
    ErrorCategory.TOO_LARGE: 413,
    ErrorCategory.UNAVAILABLE: 503,
}

CODE_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response: ``type``, ``title``, ``status``, ``detail``, ``code``, extras."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        response = problem(STATUS_BY_CATEGORY[exc.category], exc.code, exc.message, **exc.detail)
        if "retry_after" in exc.detail:  # RFC 9110 section 10.2.3, seconds
            response.headers["Retry-After"] = str(int(exc.detail["retry_after"]))
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return problem(
            422, "invalid_request", f"{where}: {first['msg']}".lstrip(": "), errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = CODE_BY_STATUS.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_transaction_conflict(exc):  # a race the request lost, not a bug: retryable
            log.warning("transaction conflict on %s %s", request.method, request.url.path)
            response = problem(
                503, "database_busy", "the database is busy; try again", retry_after=1
            )
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "an unexpected error occurred")

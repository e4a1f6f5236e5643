"""FastAPI application factories: the HTTP API and the mTLS listener's app.

``create_app(services)`` instead of import-time globals (STYLE.md), so tests build
apps over their own settings, database and clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import install_error_handlers, problem
from api.routes import (
    admin,
    applications,
    auth,
    changes,
    documents,
    mtls,
    ocsp,
    officer,
    pki,
    registry,
    renewal,
    replacement,
    review,
    self_revocation,
    staff,
)
from api.services import Services

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Body limit for everything but document uploads (bytes).
DEFAULT_BODY_LIMIT = 256 * 1024
#: Room for multipart headers and the other form fields around an upload (bytes).
MULTIPART_OVERHEAD = 64 * 1024


class BodySizeLimit:
    """ASGI middleware refusing request bodies over a limit with 413
    ``request_too_large`` — by ``Content-Length`` before reading, and by counting while
    streaming (chunked uploads), so an oversized upload is never spooled to disk.

    Args:
        limit_for: maps a request path to its limit in bytes.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > limit
                except ValueError:
                    too_large = False
                if too_large:
                    await self._refuse(scope, receive, send, limit)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not response_started:
                await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(413, "request_too_large", f"request body exceeds {limit} bytes")
        await response(scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive`` once a streamed body passes the limit. An HTTPException,
    because FastAPI turns any other exception raised while it reads the body into a 400;
    this one it re-raises, and the handler answers 413 ``request_too_large``."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def create_app(services: Services) -> FastAPI:
    """The HTTP API (applicants, officers, public PKI) over ``services``."""
    app = ocsp.OCSPFastPathApp(  # FastAPI, with the OCSP cache hits answered first
        title="ehrca",
        version="0.1.0",
        summary="Certificate authority and registration for the eHR secure connection",
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(applications.router)
    app.include_router(officer.router)
    app.include_router(replacement.router)
    app.include_router(documents.router)
    app.include_router(changes.router)
    app.include_router(review.router)
    app.include_router(registry.router)
    app.include_router(pki.router)
    app.include_router(ocsp.router)
    app.include_router(self_revocation.router)
    app.include_router(admin.router)
    app.include_router(staff.router)

    upload_limit = services.settings.max_document_bytes + MULTIPART_OVERHEAD

    def limit_for(path: str) -> int:
        return upload_limit if path.endswith("/documents") else DEFAULT_BODY_LIMIT

    app.add_middleware(BodySizeLimit, limit_for=limit_for)
    return app


def create_mtls_app(services: Services) -> FastAPI:
    """The mTLS listener's app: ``/mtls/whoami`` and later clinic-machine routes."""
    app = FastAPI(
        title="ehrca mTLS", version="0.1.0", openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(mtls.router)
    app.include_router(renewal.router)
    return app

"""FastAPI dependencies: services, a session per request, the calling principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.services import Services
from registration.accounts import Principal, authenticate


def get_services(request: Request) -> Services:
    """The process's :class:`Services` (set by ``create_app``)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One session per request, closed (and rolled back if uncommitted) at the end."""
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 2.1), else ``None``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def get_principal(request: Request, session: SessionDep, services: ServicesDep) -> Principal:
    """The caller behind the bearer token.

    Raises:
        registration.errors.NotAuthenticated: no, unknown or expired token.
    """
    return authenticate(session, bearer_token(request), now=services.clock())


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]

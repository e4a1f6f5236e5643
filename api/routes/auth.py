"""``POST /api/v1/auth/token``: OAuth2 password grant (RFC 6749 4.3) for applicants
(username = application reference) and officers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import BaseModel

from api.deps import ServicesDep, SessionDep
from registration.accounts import login

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

#: No control characters in a username: it is looked up and written to the audit trail
#: (PostgreSQL text cannot hold NUL).
USERNAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class TokenOut(BaseModel):
    """An OAuth2 bearer token response (RFC 6750)."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - RFC 6750 token type, not a secret
    expires_in: int
    role: str


@router.post("/token")
def issue_token(
    session: SessionDep,
    services: ServicesDep,
    username: Annotated[str, Form(max_length=128, pattern=USERNAME_PATTERN)],
    password: Annotated[str, Form(max_length=256)],
) -> TokenOut:
    """Exchange a username and password for a bearer token (401 ``invalid_credentials``)."""
    lifetime = dt.timedelta(seconds=services.settings.token_lifetime_seconds)
    token, principal = login(session, username, password, now=services.clock(), lifetime=lifetime)
    return TokenOut(
        access_token=token, expires_in=int(lifetime.total_seconds()), role=principal.role
    )

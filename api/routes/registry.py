"""The public registry of effective healthcare providers (no login)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep
from registration.registry import search_registry
from registration.schemas import District, ProviderType, RegistryPage

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])

#: Largest offset accepted (SQLite and PostgreSQL refuse larger OFFSET values).
MAX_OFFSET = 2**31 - 1
#: A search term: no control characters (PostgreSQL text cannot hold NUL).
QUERY_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


@router.get("")
def registry(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=100, pattern=QUERY_PATTERN)] = None,
    district: Annotated[District | None, Query()] = None,
    provider_type: Annotated[ProviderType | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> RegistryPage:
    """Effective providers: English and Chinese names, type, and each registered
    service location's name, address, district, phone and opening status. ``q``
    matches part of a provider's or location's English or Chinese name
    (case-insensitive); ``district`` and ``provider_type`` filter; ``total`` counts
    every match. Never any personal data of user administrators or staff."""
    return search_registry(
        session, q=q, district=district, provider_type=provider_type, limit=limit, offset=offset
    )

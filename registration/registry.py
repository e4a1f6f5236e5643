"""The public registry (DESIGN.md, Domain): effective providers' names, type and
service locations (address, district, phone, opening status), searchable by anyone.

Only :class:`RegistryProviderOut` fields ever leave this module: never user
administrators, staff, identity documents, contact or provider emails, references or
the correspondence address. Removed service locations are not shown.

Search is portable across SQLite and PostgreSQL: ``q`` matches a part of the English
or Chinese name of the provider or of one of its service locations, case-insensitively
(``ILIKE`` on PostgreSQL, ``lower() LIKE lower()`` on SQLite, ASCII case folding, which
is all English names need), with ``%``, ``_`` and ``/`` in ``q`` taken literally;
characters outside the Basic Multilingual Plane (HKSCS, e.g. 𨋢) match as themselves.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from registration.models import Application, ApplicationStatus, ServiceLocation
from registration.schemas import RegistryLocationOut, RegistryPage, RegistryProviderOut


def _location_exists(*criteria: ColumnElement[bool]) -> ColumnElement[bool]:
    return (
        select(ServiceLocation.id)
        .where(
            ServiceLocation.application_id == Application.id,
            ServiceLocation.removed_at.is_(None),
            *criteria,
        )
        .exists()
    )


def search_registry(
    session: Session,
    *,
    q: str | None = None,
    district: str | None = None,
    provider_type: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> RegistryPage:
    """A page of effective providers, ordered by English name.

    Args:
        q: part of a provider's or service location's English or Chinese name
            (surrounding whitespace ignored; empty means no filter).
        district: one of ``registration.rules.DISTRICTS``: providers with a service
            location there (all their locations are listed).
        provider_type: one of ``registration.rules.PROVIDER_TYPES``.
        limit: page size (the API bounds it to 1..100); offset: rows to skip.
    """
    criteria: list[ColumnElement[bool]] = [Application.status == ApplicationStatus.EFFECTIVE]
    if provider_type:
        criteria.append(Application.provider_type == provider_type)
    if district:
        criteria.append(_location_exists(ServiceLocation.district == district))
    term = (q or "").strip()
    if term:
        criteria.append(
            or_(
                Application.name_en.icontains(term, autoescape=True),
                Application.name_zh.icontains(term, autoescape=True),
                _location_exists(
                    or_(
                        ServiceLocation.name_en.icontains(term, autoescape=True),
                        ServiceLocation.name_zh.icontains(term, autoescape=True),
                    )
                ),
            )
        )
    total = session.scalar(select(func.count()).select_from(Application).where(*criteria)) or 0
    providers = session.execute(
        select(Application.id, Application.provider_type, Application.name_en, Application.name_zh)
        .where(*criteria)
        .order_by(Application.name_en, Application.id)
        .limit(limit)
        .offset(offset)
    ).all()
    locations: dict[int, list[RegistryLocationOut]] = {row.id: [] for row in providers}
    if locations:
        for location in session.scalars(
            select(ServiceLocation)
            .where(
                ServiceLocation.application_id.in_(list(locations)),
                ServiceLocation.removed_at.is_(None),
            )
            .order_by(ServiceLocation.application_id, ServiceLocation.number)
        ):
            locations[location.application_id].append(
                RegistryLocationOut(
                    name_en=location.name_en,
                    name_zh=location.name_zh,
                    address=location.address,
                    district=location.district,
                    phone=location.phone,
                    opening_status=location.opening_status,
                )
            )
    return RegistryPage(
        total=total,
        limit=limit,
        offset=offset,
        items=[
            RegistryProviderOut(
                provider_type=row.provider_type or "other",
                name_en=row.name_en or "",
                name_zh=row.name_zh,
                service_locations=locations[row.id],
            )
            for row in providers
        ],
    )

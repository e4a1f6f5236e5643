"""People (user administrators and staff), staff accounts and support requests.

- ``POST /api/v1/people/activate``: set a password with a mailed activation code
  and the identity card number (no login).
- ``GET /api/v1/me``: who the bearer token is, and for a person every provider where
  they hold a staff account or are user administrator.
- ``GET|POST /api/v1/providers/{reference}/staff``,
  ``POST /api/v1/providers/{reference}/staff/{id}/disable``: user administrators of
  an effective provider list, open and disable staff accounts.
- ``GET /api/v1/providers/{reference}/staff/me``: the caller's own account there,
  if it may act there (the check staff actions start with).
- ``POST /api/v1/applications/{reference}/user-admins/{n}/invitation``: the
  applicant has a new invitation sent to user administrator ``n``.
- ``POST /api/v1/applications/{reference}/support-requests`` (applicant, within 14
  days of acceptance); ``GET /api/v1/officer/support-requests`` (reviewers, admins).

The identity secret (HMAC key of identity keys, :mod:`registration.staff`) is read
from ``EHRCA_IDENTITY_KEY_FILE`` (default ``keys/identity-hmac.key``); if the file
does not exist it is created with 256 random bits, mode 0600. Back it up with the
CA keys: without it, people can no longer be matched to their identity.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from registration import service, staff, support
from registration.errors import Forbidden
from registration.staff_models import StaffAccount

router = APIRouter(tags=["staff"])
log = logging.getLogger("ehrca.api")

IDENTITY_KEY_FILE = "identity-hmac.key"
#: Database ids in paths: positive and within a 32-bit integer column (a larger value
#: would make PostgreSQL refuse the query instead of answering 404).
RowId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
_secrets: dict[Path, bytes] = {}


def load_identity_secret(path: Path) -> bytes:
    """The identity secret in ``path`` (hex, 32+ bytes); created when missing
    (256 random bits, 0600, exclusive create so concurrent workers agree).

    Raises:
        ValueError: the file is not hex of at least 32 bytes.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            text = path.read_text().strip()
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(value + "\n")
            log.warning("generated the identity secret %s: back it up with the CA keys", path)
            text = value
    secret = bytes.fromhex(text)
    if len(secret) < staff.MIN_IDENTITY_SECRET_BYTES:
        raise ValueError(f"{path} must hold at least 32 bytes as hex")
    return secret


def get_staff_context(services: ServicesDep) -> staff.StaffContext:
    """The :class:`registration.staff.StaffContext` of this process (the secret is
    read once per process and path)."""
    settings = services.settings
    path = settings.identity_key_file or settings.keys_dir / IDENTITY_KEY_FILE
    path = path.resolve()
    if path not in _secrets:
        _secrets[path] = load_identity_secret(path)
    return staff.StaffContext(identity_secret=_secrets[path], base_url=settings.public_base_url)


StaffContextDep = Annotated[staff.StaffContext, Depends(get_staff_context)]


# --------------------------------------------------------------------------- schemas


class ActivatedOut(BaseModel):
    """An activated login: the email address to log in with."""

    login: str
    purpose: str
    password_set: bool


class MembershipOut(BaseModel):
    """A provider where the person is staff and/or user administrator."""

    reference: str
    provider_name_en: str | None
    provider_name_zh: str | None
    effective: bool
    user_admin: bool
    staff_account_id: int | None
    staff_status: str | None
    profession: str | None
    registration_number: str | None


class MeOut(BaseModel):
    """The caller: ``providers`` are the effective providers where a person's staff
    account is active, ``administers`` where they are user administrator."""

    kind: str
    subject: str
    role: str
    providers: list[str]
    administers: list[str]
    memberships: list[MembershipOut]


class StaffAccountOut(BaseModel):
    """A staff account at a provider."""

    id: int
    provider_reference: str
    name: str
    profession: str
    registration_number: str
    status: str
    opened_at: dt.datetime
    disabled_at: dt.datetime | None


class StaffAccountList(BaseModel):
    """A provider's staff accounts."""

    provider_reference: str
    effective: bool
    items: list[StaffAccountOut]


class SupportRequestOut(BaseModel):
    """A recorded support request."""

    id: int
    reference: str
    subject: str
    message: str
    created_at: dt.datetime


def _account_out(account: StaffAccount, reference: str) -> StaffAccountOut:
    return StaffAccountOut(
        id=account.id,
        provider_reference=reference,
        name=account.name,
        profession=account.registration.profession,
        registration_number=account.registration.registration_number,
        status=account.status.value,
        opened_at=account.opened_at,
        disabled_at=account.disabled_at,
    )


# --------------------------------------------------------------------------- routes


@router.post("/api/v1/people/activate")
def activate(
    data: staff.ActivationIn, session: SessionDep, services: ServicesDep, ctx: StaffContextDep
) -> ActivatedOut:
    """Set the password of an invited user administrator or new staff member (or
    confirm an existing login's password) with the activation code and identity card
    number. Refusals: 403 ``activation_code_invalid`` / ``identity_document_mismatch`` /
    ``existing_password_mismatch``, 409 ``activation_code_used`` /
    ``activation_code_void`` / ``email_in_use``, 410 ``activation_code_expired``."""
    result = staff.activate(
        session,
        ctx,
        code=data.activation_code,
        identity_document=data.identity_document,
        password=data.password,
        now=services.clock(),
    )
    return ActivatedOut(
        login=result.person.email, purpose=result.purpose.value, password_set=result.password_set
    )


@router.get("/api/v1/me")
def me(session: SessionDep, services: ServicesDep, principal: CurrentPrincipal) -> MeOut:
    """Who the token belongs to; for people, their providers."""
    rows = staff.memberships(session, principal)
    return MeOut(
        kind=principal.kind,
        subject=principal.subject,
        role=principal.role,
        providers=list(principal.providers),
        administers=list(principal.administers),
        memberships=[MembershipOut.model_validate(r, from_attributes=True) for r in rows],
    )


@router.get("/api/v1/providers/{reference}/staff")
def list_staff(
    reference: str, session: SessionDep, principal: CurrentPrincipal
) -> StaffAccountList:
    """The provider's staff accounts (its user administrators; 404
    ``provider_not_found`` for anyone else's provider)."""
    application, accounts = staff.list_staff_accounts(session, principal, reference)
    return StaffAccountList(
        provider_reference=application.reference,
        effective=staff.is_effective(application),
        items=[_account_out(a, application.reference) for a in accounts],
    )


@router.post("/api/v1/providers/{reference}/staff", status_code=201)
def open_staff_account(
    reference: str,
    data: staff.StaffAccountIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
    ctx: StaffContextDep,
) -> StaffAccountOut:
    """Open a staff account (user administrators of an effective provider). Refusals:
    404 ``provider_not_found``, 409 ``provider_not_effective`` /
    ``registration_number_in_use`` / ``registration_number_mismatch`` /
    ``staff_account_exists`` / ``email_in_use`` / ``concurrent_change``, 422
    ``profession_unknown`` /
    ``registration_number_invalid``. The professional is mailed at once."""
    account = staff.open_staff_account(
        session, ctx, principal, reference, data, now=services.clock()
    )
    _deliver(services)
    return _account_out(account, reference)


@router.get("/api/v1/providers/{reference}/staff/me")
def my_staff_account(
    reference: str, session: SessionDep, principal: CurrentPrincipal
) -> StaffAccountOut:
    """The caller's own account at the provider if it may act there: 403
    ``staff_account_disabled``, 404 ``staff_account_not_found``, 409
    ``provider_not_effective`` otherwise."""
    account = staff.active_staff_account(session, principal, reference)
    return _account_out(account, reference)


@router.post("/api/v1/providers/{reference}/staff/{account_id}/disable")
def disable_staff_account(
    reference: str,
    account_id: RowId,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> StaffAccountOut:
    """Disable a staff account at this provider only (user administrators of an
    effective provider; 404 ``staff_account_not_found`` for another provider's)."""
    account = staff.disable_staff_account(
        session, principal, reference, account_id, now=services.clock()
    )
    return _account_out(account, reference)


@router.post("/api/v1/applications/{reference}/user-admins/{number}/invitation", status_code=202)
def reinvite_user_admin(
    reference: str,
    number: RowId,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> dict[str, str]:
    """Mail user administrator ``number`` (1, 2, ... in step 2 order) a new invitation;
    earlier codes stop working (the applicant). 409 ``user_admin_already_active`` /
    ``application_not_accepted``, 404 ``user_admin_not_found``."""
    if principal.kind != "applicant":
        raise Forbidden("only the applicant can do this", code="applicant_only")
    application = service.get_application(session, reference, principal)
    staff.reinvite_user_admin(
        session,
        application,
        number,
        actor=principal.subject,
        now=services.clock(),
        base_url=services.settings.public_base_url,
    )
    _deliver(services)
    return {"status": "invitation sent"}


@router.post(
    "/api/v1/applications/{reference}/support-requests", status_code=201, tags=["applications"]
)
def request_support(
    reference: str,
    data: support.SupportRequestIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> SupportRequestOut:
    """Ask for technical support (the applicant, within 14 days of the acceptance
    email: 409 ``support_window_closed`` after, ``support_not_available`` before)."""
    application = service.get_application(session, reference, principal)
    request = support.create_support_request(
        session, application, principal, data, now=services.clock()
    )
    return SupportRequestOut(
        id=request.id,
        reference=application.reference,
        subject=request.subject,
        message=request.message,
        created_at=request.created_at,
    )


@router.get("/api/v1/officer/support-requests", tags=["officer"])
def list_support_requests(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[SupportRequestOut]:
    """Support requests, newest first (reviewers and admins)."""
    rows = support.list_support_requests(session, principal, limit=limit, offset=offset)
    return [
        SupportRequestOut(
            id=r.id, reference=ref, subject=r.subject, message=r.message, created_at=r.created_at
        )
        for r, ref in rows
    ]


def _deliver(services: ServicesDep) -> None:
    try:
        services.deliver_mail()
    except Exception:  # the change is committed; the outbox retries the mail
        log.exception("mail delivery failed")

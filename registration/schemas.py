"""Pydantic schemas of the registration steps (input) and the review (output)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)

from registration import rules

Text64 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(rules.check_single_line),
]
Text255 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(rules.check_text),
]
Phone = Annotated[str, AfterValidator(rules.check_phone)]
#: An RFC 3339 date-time with an offset, as UTC (years 1-9999).
UTCDateTime = Annotated[AwareDatetime, AfterValidator(rules.check_utc)]
ProviderType = rules.ProviderType
Language = rules.Language
District = rules.District
OpeningStatus = rules.OpeningStatus


class Strict(BaseModel):
    """Base: unknown fields are refused, so a typo is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ApplicationCreate(Strict):
    """``POST /api/v1/applications``: the applicant's contact, password and language."""

    contact_email: EmailStr
    password: str = Field(min_length=12, max_length=128)
    language: Language = "en"


class ProviderDetails(Strict):
    """Step 1: the healthcare provider. Names are at most 64 characters (X.520 bound,
    they go into the certificate subject)."""

    provider_type: ProviderType
    name_en: Text64
    name_zh: Text64 | None = None
    business_registration_number: Annotated[
        str, AfterValidator(rules.check_business_registration_number)
    ]
    correspondence_address: Text255
    phone: Phone
    email: EmailStr
    preferred_language: Language = "en"


class UserAdminIn(Strict):
    """Step 2: one user administrator. The HKID is hashed on receipt."""

    name: Text64
    identity_document: Annotated[str, AfterValidator(rules.check_hkid)]
    email: EmailStr
    phone: Phone
    position: Text64


class ServiceLocationIn(Strict):
    """Step 3: one service location."""

    name_en: Text64
    name_zh: Text64 | None = None
    address: Text255
    district: District
    phone: Phone
    opening_status: OpeningStatus = "open"


class DecisionIn(Strict):
    """An officer's decision with its reason."""

    decision: Literal["approve", "reject", "request_documents"]
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
        AfterValidator(rules.check_text),
    ]


class UserAdminOut(BaseModel):
    """A user administrator as shown back (identity document: last 4 only)."""

    name: str
    identity_document_last4: str
    email: str
    phone: str
    position: str


class ServiceLocationOut(BaseModel):
    """A service location as shown back, with its ``id`` for collection URLs."""

    id: int
    name_en: str
    name_zh: str | None
    address: str
    district: str
    phone: str
    opening_status: str
    certificate_serial_numbers: list[str] = []
    removed_at: dt.datetime | None = None


class DocumentOut(BaseModel):
    """An uploaded document's metadata."""

    id: int
    kind: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_at: dt.datetime


class EventOut(BaseModel):
    """A recorded transition."""

    from_status: str
    to_status: str
    actor: str
    reason: str | None
    at: dt.datetime


class ProviderOut(BaseModel):
    """Step 1 as shown back."""

    provider_type: str
    name_en: str | None
    name_zh: str | None
    business_registration_number: str | None
    correspondence_address: str | None
    phone: str | None
    email: str | None
    preferred_language: str


class ApplicationOut(BaseModel):
    """``GET /api/v1/applications/{reference}``: every step, what is missing, the status."""

    reference: str
    status: str
    language: str
    contact_email: str
    provider: ProviderOut | None
    user_admins: list[UserAdminOut]
    service_locations: list[ServiceLocationOut]
    documents: list[DocumentOut]
    missing: list[str]
    decision_reason: str | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    accepted_at: dt.datetime | None
    effective_at: dt.datetime | None
    events: list[EventOut]


Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(rules.check_text),
]


class ReasonIn(Strict):
    """A change the provider makes after registration (remove a service location,
    withdraw), with the reason recorded and sent back in the confirmation email."""

    reason: Reason


class ChangeRequestIn(Strict):
    """``POST /api/v1/applications/{reference}/change-requests``: ask to add a service
    location to an approved or effective registration (reviewed like an application)."""

    kind: Literal["add_service_location"]
    service_location: ServiceLocationIn
    reason: Reason | None = None


class ChangeDecisionIn(Strict):
    """A reviewer's decision on a change request, with the reason the applicant sees."""

    decision: Literal["approve", "reject"]
    reason: Reason


class ChangeRequestOut(BaseModel):
    """A change request: what was asked, by whom and why, and the decision.
    ``service_location_id`` is the new location's ``id`` once an addition is approved
    (or the removed location's)."""

    id: int
    reference: str
    kind: str
    status: str
    service_location: ServiceLocationIn | None
    service_location_id: int | None
    requested_by: str
    reason: str | None
    requested_at: dt.datetime
    decided_by: str | None
    decision_reason: str | None
    decided_at: dt.datetime | None


class ChangeRequestPage(BaseModel):
    """A page of change requests."""

    total: int
    limit: int
    offset: int
    items: list[ChangeRequestOut]


class RegistryLocationOut(BaseModel):
    """A registered service location as the public registry shows it."""

    name_en: str
    name_zh: str | None
    address: str
    district: str
    phone: str
    opening_status: str


class RegistryProviderOut(BaseModel):
    """An effective provider in the public registry: names, type and service locations
    only (never user administrators, staff, identity documents or contact emails)."""

    provider_type: str
    name_en: str
    name_zh: str | None
    service_locations: list[RegistryLocationOut]


class RegistryPage(BaseModel):
    """``GET /api/v1/registry``: a page of effective providers (``total`` matches)."""

    total: int
    limit: int
    offset: int
    items: list[RegistryProviderOut]

"""Registration refusals, each with a stable code."""

from __future__ import annotations

from ca.errors import DomainError, ErrorCategory


class RegistrationError(DomainError):
    """Base of registration refusals."""

    code = "registration_error"


class ApplicationNotFound(RegistrationError):
    """Unknown reference, or one the caller may not see (reported alike, so references
    of other applicants cannot be probed)."""

    code = "application_not_found"
    category = ErrorCategory.NOT_FOUND


class ServiceLocationNotFound(RegistrationError):
    """The application has no service location with that id."""

    code = "service_location_not_found"
    category = ErrorCategory.NOT_FOUND


class ApplicationLocked(RegistrationError):
    """The step cannot be changed in the application's current state."""

    code = "application_not_editable"
    category = ErrorCategory.CONFLICT


class ApplicationIncomplete(RegistrationError):
    """Submit refused: ``detail['missing']`` lists what is still missing."""

    code = "application_incomplete"
    category = ErrorCategory.INVALID


class NotCollectable(RegistrationError):
    """Certificates can be collected only once the application is approved."""

    code = "application_not_approved"
    category = ErrorCategory.CONFLICT


class DocumentRejected(RegistrationError):
    """An upload is not a PDF, JPEG or PNG, is empty, or breaks a limit."""

    code = "document_rejected"
    category = ErrorCategory.INVALID


class InvalidCredentials(RegistrationError):
    """Login failed (the message never says which half was wrong)."""

    code = "invalid_credentials"
    category = ErrorCategory.UNAUTHORIZED


class NotAuthenticated(RegistrationError):
    """No, an unknown or an expired bearer token."""

    code = "not_authenticated"
    category = ErrorCategory.UNAUTHORIZED


class Forbidden(RegistrationError):
    """Authenticated, but the role may not do this."""

    code = "forbidden"
    category = ErrorCategory.FORBIDDEN


class OfficerExists(RegistrationError):
    """An officer with that name exists already."""

    code = "officer_exists"
    category = ErrorCategory.CONFLICT


class ApplicationLapsed(NotCollectable):
    """The application lapsed (a 60-day deadline passed): its download codes no longer
    work and nothing more can be done with it."""

    code = "application_lapsed"
    category = ErrorCategory.GONE


class ApplicationWithdrawn(NotCollectable):
    """The provider withdrew the registration; its certificates are revoked."""

    code = "application_withdrawn"
    category = ErrorCategory.GONE


class ServiceLocationRemoved(RegistrationError):
    """The service location was removed from the registration (its certificates are
    revoked and its download codes no longer work)."""

    code = "service_location_removed"
    category = ErrorCategory.GONE


class DocumentNotFound(RegistrationError):
    """No such document on this application (or the caller may not read it)."""

    code = "document_not_found"
    category = ErrorCategory.NOT_FOUND


class ChangeRequestNotFound(RegistrationError):
    """No change request with that id (for this caller)."""

    code = "change_request_not_found"
    category = ErrorCategory.NOT_FOUND


class ChangeRefused(RegistrationError):
    """A change after registration is not possible now (``code`` says why:
    ``registration_not_active``, ``last_service_location``, ``too_many_pending_changes``,
    ``too_many_service_locations``, ``change_request_decided``)."""

    code = "change_refused"
    category = ErrorCategory.CONFLICT

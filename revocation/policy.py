"""Who may revoke with which reason (RFC 5280 5.3.1 reason codes as ``x509.ReasonFlags``).

As Boulder does, the allowed reasons depend on who asks:
- an applicant, on its own certificates: keyCompromise or superseded;
- a security officer: any reason but removeFromCRL (which only undoes a hold, and ehrca
  never un-revokes).
Reviewers and admins may not revoke (separate duties, DESIGN.md).
"""

from __future__ import annotations

from cryptography import x509

from revocation.errors import InvalidRevocationRequest, ReasonNotAllowed

R = x509.ReasonFlags

ALLOWED_REASONS: dict[str, frozenset[x509.ReasonFlags]] = {
    "applicant": frozenset({R.key_compromise, R.superseded}),
    "security_officer": frozenset(set(R) - {R.remove_from_crl}),
}


def parse_reason(name: str) -> x509.ReasonFlags:
    """Return the :class:`x509.ReasonFlags` whose RFC 5280 name is ``name`` (``keyCompromise``).

    Raises:
        InvalidRevocationRequest: unknown name.
    """
    try:
        return x509.ReasonFlags(name)
    except ValueError as exc:
        names = ", ".join(r.value for r in x509.ReasonFlags)
        raise InvalidRevocationRequest(
            f"unknown revocation reason {name!r}; RFC 5280 5.3.1 names: {names}"
        ) from exc


def check_reason(role: str, reason: x509.ReasonFlags) -> None:
    """Refuse ``reason`` unless ``role`` may use it.

    Raises:
        ReasonNotAllowed: the role may not revoke at all, or not with this reason.
    """
    allowed = ALLOWED_REASONS.get(role)
    if allowed is None:
        raise ReasonNotAllowed(f"role {role!r} may not revoke certificates")
    if reason not in allowed:
        raise ReasonNotAllowed(
            f"role {role!r} may not revoke with reason {reason.value!r}; allowed: "
            + ", ".join(sorted(r.value for r in allowed))
        )

"""Tests for revocation.policy: which role may revoke with which RFC 5280 5.3.1 reason,
and reason names."""

from __future__ import annotations

import pytest
from cryptography import x509

from revocation.errors import InvalidRevocationRequest, ReasonNotAllowed
from revocation.policy import ALLOWED_REASONS, check_reason, parse_reason

R = x509.ReasonFlags
ALL_REASONS = list(R)
APPLICANT = {R.key_compromise, R.superseded}


def test_there_are_ten_reasons() -> None:
    # RFC 5280 5.3.1 minus the unused value 7.
    assert len(ALL_REASONS) == 10


@pytest.mark.parametrize("reason", ALL_REASONS, ids=lambda r: r.value)
def test_applicant(reason: x509.ReasonFlags) -> None:
    if reason in APPLICANT:
        check_reason("applicant", reason)
    else:
        with pytest.raises(ReasonNotAllowed, match="allowed: keyCompromise, superseded") as info:
            check_reason("applicant", reason)
        assert info.value.code == "revocation_reason_not_allowed"


@pytest.mark.parametrize("reason", ALL_REASONS, ids=lambda r: r.value)
def test_security_officer(reason: x509.ReasonFlags) -> None:
    if reason is R.remove_from_crl:
        with pytest.raises(ReasonNotAllowed, match="removeFromCRL"):
            check_reason("security_officer", reason)
    else:
        check_reason("security_officer", reason)


@pytest.mark.parametrize("role", ["reviewer", "admin", "", "Applicant", "SECURITY_OFFICER"])
@pytest.mark.parametrize("reason", ALL_REASONS, ids=lambda r: r.value)
def test_other_roles_may_not_revoke(role: str, reason: x509.ReasonFlags) -> None:
    with pytest.raises(ReasonNotAllowed, match="may not revoke certificates"):
        check_reason(role, reason)


def test_allowed_reasons_table() -> None:
    assert ALLOWED_REASONS["applicant"] == frozenset(APPLICANT)
    assert ALLOWED_REASONS["security_officer"] == frozenset(ALL_REASONS) - {R.remove_from_crl}
    assert set(ALLOWED_REASONS) == {"applicant", "security_officer"}


@pytest.mark.parametrize("reason", ALL_REASONS, ids=lambda r: r.value)
def test_parse_reason_every_name(reason: x509.ReasonFlags) -> None:
    assert parse_reason(reason.value) is reason


def test_parse_reason_names() -> None:
    assert [r.value for r in ALL_REASONS] == [
        "unspecified",
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "certificateHold",
        "privilegeWithdrawn",
        "aACompromise",
        "removeFromCRL",
    ]


@pytest.mark.parametrize(
    "name", ["lostKey", "", "keycompromise", "key_compromise", "KEYCOMPROMISE", " superseded", "1"]
)
def test_parse_reason_unknown(name: str) -> None:
    with pytest.raises(InvalidRevocationRequest, match="unknown revocation reason") as info:
        parse_reason(name)
    assert info.value.code == "invalid_revocation_request"
    assert "keyCompromise" in info.value.message

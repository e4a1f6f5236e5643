"""The application state machine: pure, no I/O (DESIGN.md, Domain).

``draft → submitted → (documents_requested → submitted)* → approved | rejected``;
``approved → effective`` (14 days after the acceptance email, whether or not a
certificate has been collected), ``documents_requested | approved | effective →
lapsed`` (60-day deadlines: no requested documents, no certificate collected within
60 days of acceptance) and ``approved | effective → withdrawn`` (the provider gives up
the whole registration). Every transition is an
:class:`Event` naming the actor and the reason; ``rejected``, ``effective`` once
withdrawn, ``lapsed`` and ``withdrawn`` are final. The time rules themselves (when a
deadline has passed) live in ``registration.tasks``; this module only says which
moves exist.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ca.errors import DomainError, ErrorCategory
from registration.models import ApplicationStatus as S


class Action(enum.StrEnum):
    """What someone does to an application."""

    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_DOCUMENTS = "request_documents"
    BECOME_EFFECTIVE = "become_effective"
    LAPSE = "lapse"
    WITHDRAW = "withdraw"


#: (state, action) → next state. Anything absent is refused.
TRANSITIONS: dict[tuple[S, Action], S] = {
    (S.DRAFT, Action.SUBMIT): S.SUBMITTED,
    (S.DOCUMENTS_REQUESTED, Action.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, Action.APPROVE): S.APPROVED,
    (S.SUBMITTED, Action.REJECT): S.REJECTED,
    (S.SUBMITTED, Action.REQUEST_DOCUMENTS): S.DOCUMENTS_REQUESTED,
    (S.APPROVED, Action.BECOME_EFFECTIVE): S.EFFECTIVE,
    (S.APPROVED, Action.LAPSE): S.LAPSED,
    (S.DOCUMENTS_REQUESTED, Action.LAPSE): S.LAPSED,
    (S.EFFECTIVE, Action.LAPSE): S.LAPSED,
    (S.APPROVED, Action.WITHDRAW): S.WITHDRAWN,
    (S.EFFECTIVE, Action.WITHDRAW): S.WITHDRAWN,
}

#: Actions that need a reviewer and a reason.
REVIEW_ACTIONS = frozenset({Action.APPROVE, Action.REJECT, Action.REQUEST_DOCUMENTS})
#: States in which the applicant may still edit the steps.
EDITABLE = frozenset({S.DRAFT})
#: States in which the applicant may upload (supplementary) documents.
UPLOADABLE = frozenset({S.DRAFT, S.DOCUMENTS_REQUESTED})
#: States in which certificates may be collected.
COLLECTABLE = frozenset({S.APPROVED, S.EFFECTIVE})
#: States of a registration that may change after approval (add or remove a service
#: location, withdraw).
REGISTERED = frozenset({S.APPROVED, S.EFFECTIVE})
#: Actions only the system takes, driven by the clock (``registration.tasks``).
SYSTEM_ACTIONS = frozenset({Action.BECOME_EFFECTIVE, Action.LAPSE})
#: The actor recorded for :data:`SYSTEM_ACTIONS`.
SYSTEM_ACTOR = "system"


class TransitionRefused(DomainError):
    """The action is not allowed in the application's current state."""

    code = "invalid_state_transition"
    category = ErrorCategory.CONFLICT


@dataclass(frozen=True, slots=True)
class Event:
    """A transition to record: from, to, who and why."""

    from_status: S
    to_status: S
    action: Action
    actor: str
    reason: str | None


def transition(state: S, action: Action, *, actor: str, reason: str | None = None) -> Event:
    """Return the :class:`Event` for doing ``action`` in ``state``.

    Raises:
        TransitionRefused: the pair is not in :data:`TRANSITIONS`, or a review action
            comes without a reason.
    """
    target = TRANSITIONS.get((state, action))
    if target is None:
        raise TransitionRefused(f"cannot {action.value} an application that is {state.value}")
    if action in REVIEW_ACTIONS and not (reason and reason.strip()):
        raise TransitionRefused(f"{action.value} needs a reason")
    if not actor:
        raise TransitionRefused("every transition needs an actor")
    return Event(state, target, action, actor, reason)

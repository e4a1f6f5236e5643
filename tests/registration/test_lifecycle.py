"""Tests for registration.lifecycle: the application state machine.

A hypothesis state machine drives random actions from ``draft`` and checks that every
step either follows :data:`TRANSITIONS` or is refused, and that review is never
skipped: approved and rejected are reached only from submitted.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from registration.lifecycle import (
    COLLECTABLE,
    EDITABLE,
    REVIEW_ACTIONS,
    TRANSITIONS,
    UPLOADABLE,
    Action,
    Event,
    TransitionRefused,
    transition,
)
from registration.models import ApplicationStatus as S

REASONS = st.none() | st.sampled_from(["", "   ", "\t\n", "documents verified", "x"])
ACTORS = st.sampled_from(["", "applicant:HCP-7K3Q9M2T", "reviewer:alice", "system"])


def has_reason(reason: str | None) -> bool:
    return bool(reason and reason.strip())


def test_transition_table() -> None:
    assert TRANSITIONS == {
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
    assert {Action.APPROVE, Action.REJECT, Action.REQUEST_DOCUMENTS} == REVIEW_ACTIONS
    assert {S.DRAFT} == EDITABLE
    assert {S.DRAFT, S.DOCUMENTS_REQUESTED} == UPLOADABLE
    assert {S.APPROVED, S.EFFECTIVE} == COLLECTABLE


def test_final_states() -> None:
    with_exits = {state for state, _ in TRANSITIONS}
    assert set(S) - with_exits == {S.REJECTED, S.LAPSED, S.WITHDRAWN}
    # Every state is reachable from draft.
    reached = {S.DRAFT}
    frontier = [S.DRAFT]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(S)


def test_review_outcomes_only_from_submitted() -> None:
    for (state, _action), target in TRANSITIONS.items():
        if target in (S.APPROVED, S.REJECTED, S.DOCUMENTS_REQUESTED):
            assert state is S.SUBMITTED
    for state in S:
        for action in (Action.APPROVE, Action.REJECT, Action.REQUEST_DOCUMENTS):
            if state is not S.SUBMITTED:
                with pytest.raises(TransitionRefused):
                    transition(state, action, actor="reviewer:alice", reason="because")


@pytest.mark.parametrize("state", [S.REJECTED, S.LAPSED, S.WITHDRAWN])
@pytest.mark.parametrize("action", list(Action))
def test_final_states_refuse_everything(state: S, action: Action) -> None:
    with pytest.raises(TransitionRefused, match=f"cannot {action.value}") as info:
        transition(state, action, actor="system", reason="any")
    assert info.value.code == "invalid_state_transition"
    assert info.value.category == "conflict"


@pytest.mark.parametrize("action", sorted(REVIEW_ACTIONS))
@pytest.mark.parametrize("reason", [None, "", "   ", "\n\t"])
def test_review_actions_need_a_reason(action: Action, reason: str | None) -> None:
    with pytest.raises(TransitionRefused, match="needs a reason"):
        transition(S.SUBMITTED, action, actor="reviewer:alice", reason=reason)


def test_event_values() -> None:
    event = transition(S.SUBMITTED, Action.APPROVE, actor="reviewer:alice", reason="ok")
    assert event == Event(S.SUBMITTED, S.APPROVED, Action.APPROVE, "reviewer:alice", "ok")
    submit = transition(S.DRAFT, Action.SUBMIT, actor="applicant:HCP-1")
    assert submit == Event(S.DRAFT, S.SUBMITTED, Action.SUBMIT, "applicant:HCP-1", None)


def test_every_transition_needs_an_actor() -> None:
    for state, action in TRANSITIONS:
        with pytest.raises(TransitionRefused, match="actor"):
            transition(state, action, actor="", reason="because")


@given(
    state=st.sampled_from(list(S)),
    action=st.sampled_from(list(Action)),
    actor=ACTORS,
    reason=REASONS,
)
def test_single_step(state: S, action: Action, actor: str, reason: str | None) -> None:
    allowed = (
        (state, action) in TRANSITIONS
        and (action not in REVIEW_ACTIONS or has_reason(reason))
        and bool(actor)
    )
    if not allowed:
        with pytest.raises(TransitionRefused):
            transition(state, action, actor=actor, reason=reason)
        return
    event = transition(state, action, actor=actor, reason=reason)
    assert event == Event(state, TRANSITIONS[(state, action)], action, actor, reason)


class ApplicationMachine(RuleBasedStateMachine):
    """One application from draft; random actions, actors and reasons."""

    def __init__(self) -> None:
        super().__init__()
        self.state = S.DRAFT
        self.history: list[S] = [S.DRAFT]
        self.events: list[Event] = []

    @rule(action=st.sampled_from(list(Action)), actor=ACTORS, reason=REASONS)
    def act(self, action: Action, actor: str, reason: str | None) -> None:
        target = TRANSITIONS.get((self.state, action))
        try:
            event = transition(self.state, action, actor=actor, reason=reason)
        except TransitionRefused:
            assert (
                target is None or (action in REVIEW_ACTIONS and not has_reason(reason)) or not actor
            )
            return
        assert target is not None
        assert event.from_status is self.state
        assert event.to_status is target
        assert event.action is action and event.actor == actor and event.reason == reason
        if action in REVIEW_ACTIONS:
            assert has_reason(reason)
        self.events.append(event)
        self.state = target
        self.history.append(target)

    @invariant()
    def review_never_skipped(self) -> None:
        for previous, current in zip(self.history, self.history[1:], strict=False):
            if current in (S.APPROVED, S.REJECTED, S.DOCUMENTS_REQUESTED):
                assert previous is S.SUBMITTED
            if current is S.EFFECTIVE:
                assert previous is S.APPROVED
        if self.state is not S.DRAFT:
            assert S.SUBMITTED in self.history  # every road out of draft is a submission

    @invariant()
    def events_chain(self) -> None:
        state = S.DRAFT
        for event in self.events:
            assert event.from_status is state
            state = event.to_status
        assert state is self.state


ApplicationMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30)
TestApplicationMachine = ApplicationMachine.TestCase


@given(st.lists(st.sampled_from(list(Action)), max_size=20))
def test_any_action_sequence_with_reasons(actions: list[Action]) -> None:
    """Sequences with an actor and a reason: refused exactly when not in the table."""
    state = S.DRAFT
    seen = [state]
    for action in actions:
        if (state, action) in TRANSITIONS:
            state = transition(state, action, actor="someone", reason="a reason").to_status
            seen.append(state)
        else:
            with pytest.raises(TransitionRefused):
                transition(state, action, actor="someone", reason="a reason")
    if S.APPROVED in seen or S.REJECTED in seen:
        first_decision = min(i for i, s in enumerate(seen) if s in (S.APPROVED, S.REJECTED))
        assert S.SUBMITTED in seen[:first_decision]

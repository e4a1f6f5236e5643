"""Properties of the application state machine (registration.lifecycle) that issue 3
asks for, over random action sequences: no transition skips review, nothing is edited
after submit except supplementary documents, no approval without every required
document, every transition records who and why, and the ends are final."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from registration import rules
from registration.lifecycle import (
    COLLECTABLE,
    EDITABLE,
    REGISTERED,
    REVIEW_ACTIONS,
    SYSTEM_ACTIONS,
    TRANSITIONS,
    UPLOADABLE,
    Action,
    Event,
    TransitionRefused,
    transition,
)
from registration.models import Application, Document
from registration.models import ApplicationStatus as S
from registration.service import missing_items

FINAL = {S.REJECTED, S.LAPSED, S.WITHDRAWN}
STEPS = st.lists(
    st.tuples(
        st.sampled_from(list(Action)),
        st.sampled_from(["HCP-7K3Q9M2T", "rita", "system", ""]),
        st.none() | st.sampled_from(["", "  ", "documents verified", "licence expired"]),
    ),
    max_size=40,
)


def run(steps: list[tuple[Action, str, str | None]]) -> list[Event]:
    """Apply every step that the machine accepts, from draft; return the events."""
    state = S.DRAFT
    events: list[Event] = []
    for action, actor, reason in steps:
        try:
            event = transition(state, action, actor=actor, reason=reason)
        except TransitionRefused:
            continue
        assert event.from_status is state
        events.append(event)
        state = event.to_status
    return events


@settings(max_examples=300)
@given(STEPS)
def test_no_transition_skips_review(steps: list[tuple[Action, str, str | None]]) -> None:
    events = run(steps)
    for i, event in enumerate(events):
        if event.to_status in (S.APPROVED, S.REJECTED, S.DOCUMENTS_REQUESTED):
            assert event.from_status is S.SUBMITTED
            assert event.action in REVIEW_ACTIONS
            assert event.reason and event.reason.strip()
        if event.to_status in COLLECTABLE | REGISTERED | {S.WITHDRAWN}:
            # Reached only through an approval with a reason, after a submit.
            approvals = [e for e in events[: i + 1] if e.action is Action.APPROVE]
            assert len(approvals) == 1
            assert any(e.action is Action.SUBMIT for e in events[: events.index(approvals[0])])


@settings(max_examples=300)
@given(STEPS)
def test_nothing_is_edited_after_submit_but_supplementary_documents(
    steps: list[tuple[Action, str, str | None]],
) -> None:
    events = run(steps)
    submitted = False
    for event in events:
        submitted = submitted or event.action is Action.SUBMIT
        if submitted:
            assert event.to_status not in EDITABLE
            if event.to_status in UPLOADABLE:
                # The only state that takes uploads after submit is the reviewer's request.
                assert event.to_status is S.DOCUMENTS_REQUESTED
                assert event.action is Action.REQUEST_DOCUMENTS
    assert {S.DOCUMENTS_REQUESTED} == UPLOADABLE - EDITABLE


@settings(max_examples=300)
@given(STEPS)
def test_every_transition_records_who_and_why(
    steps: list[tuple[Action, str, str | None]],
) -> None:
    for event in run(steps):
        assert event.actor  # who
        if event.action in REVIEW_ACTIONS:
            assert event.reason and event.reason.strip()  # why, shown to the applicant
        assert (event.from_status, event.action) in TRANSITIONS


def test_final_states_and_system_actions() -> None:
    for state in FINAL:
        assert not [a for (s, a) in TRANSITIONS if s is state]
    # Time rules: approved → effective; documents_requested, approved or effective →
    # lapsed (an effective registration with nothing collected lapses at day 60);
    # withdrawal only from registered states.
    system_moves = {
        (state, action): target
        for (state, action), target in TRANSITIONS.items()
        if action in SYSTEM_ACTIONS
    }
    assert system_moves == {
        (S.APPROVED, Action.BECOME_EFFECTIVE): S.EFFECTIVE,
        (S.APPROVED, Action.LAPSE): S.LAPSED,
        (S.DOCUMENTS_REQUESTED, Action.LAPSE): S.LAPSED,
        (S.EFFECTIVE, Action.LAPSE): S.LAPSED,
    }
    for (state, action), target in TRANSITIONS.items():
        if action is Action.WITHDRAW:
            assert state in REGISTERED and target is S.WITHDRAWN
    assert COLLECTABLE == REGISTERED == {S.APPROVED, S.EFFECTIVE}


def _application(provider_type: str | None, kinds: list[str]) -> Application:
    application = Application(reference="HCP-7K3Q9M2T", provider_type=provider_type)
    application.documents = [
        Document(kind=k, filename=f"{k}.pdf", sha256=f"{i:064x}") for i, k in enumerate(kinds)
    ]
    return application


@settings(max_examples=300)
@given(
    provider_type=st.sampled_from(rules.PROVIDER_TYPES),
    kinds=st.lists(st.sampled_from(rules.DOCUMENT_KINDS), max_size=6),
)
def test_no_approval_without_every_required_document(provider_type: str, kinds: list[str]) -> None:
    """The completeness check that guards submit and approval (``missing_items``)
    names exactly the required kinds not uploaded; supplementary kinds never count."""
    application = _application(provider_type, kinds)
    document_items = [m for m in missing_items(application) if m.startswith("document:")]
    expected = [f"document:{k}" for k in rules.REQUIRED_DOCUMENTS[provider_type] if k not in kinds]
    assert document_items == expected
    complete = set(rules.REQUIRED_DOCUMENTS[provider_type]) <= set(kinds)
    assert (document_items == []) == complete


def test_required_documents_are_data() -> None:
    """Every provider type of the issue has its rule, every required kind can be
    uploaded, and every type needs at least one document."""
    expected = {
        "private_hospital",
        "non_private_hospital",
        "medical_group",
        "solo_practice",
        "nursing_home",
        "laboratory",
        "pharmacy",
        "other",
    }
    assert set(rules.REQUIRED_DOCUMENTS) == expected
    for kinds in rules.REQUIRED_DOCUMENTS.values():
        assert kinds and set(kinds) <= set(rules.DOCUMENT_KINDS)

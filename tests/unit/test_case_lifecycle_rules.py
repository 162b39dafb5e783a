"""Case ownership, transfer, closure and reopening, as pure rules: the fold
(services/case/case.py) and the identifier's decisions (services/identifier/domain.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from contracts.commands import (
    AcceptCaseTransfer,
    CloseCase,
    DeclineCaseTransfer,
    ReopenCase,
    RequestCaseTransfer,
)
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseReopened,
    CaseTransferDeclined,
    CaseTransferred,
    CaseTransferRequested,
    Event,
)
from contracts.replies import CommandRejection, ErrorCode
from contracts.vocabulary import (
    CaseStatus,
    ClosureReason,
    ErasureReason,
    ReopenReason,
    TransferDeclineReason,
    TransferReason,
)
from services.case.case import Case, may_manage
from services.identifier.domain import (
    decide_accept_transfer,
    decide_close,
    decide_decline_transfer,
    decide_reopen,
    decide_request_transfer,
)
from tests.unit.test_case_core import CASE, IDENTIFIER, agency, case_of

RECEIVER = "kg-ngo-osh-crisis-centre"
COORDINATING_BODY = "kg-coordinating-body"

REQUESTED = CaseTransferRequested(
    case_id=CASE,
    from_agency=IDENTIFIER,
    to_agency=RECEIVER,
    requested_by=IDENTIFIER,
    reason=TransferReason.PERSON_RELOCATED,
)
TRANSFERRED = CaseTransferred(case_id=CASE, from_agency=IDENTIFIER, to_agency=RECEIVER)
DECLINED = CaseTransferDeclined(
    case_id=CASE,
    from_agency=IDENTIFIER,
    to_agency=RECEIVER,
    reason=TransferDeclineReason.NO_CAPACITY,
)
CLOSED = CaseClosed(
    case_id=CASE, owner=IDENTIFIER, closed_by=IDENTIFIER, reason=ClosureReason.LOST_CONTACT
)
REOPENED = CaseReopened(
    case_id=CASE, owner=IDENTIFIER, reopened_by=IDENTIFIER, reason=ReopenReason.CONTACT_RESUMED
)


def refused(decide: Callable[[], list[Event]]) -> list[tuple[str, ErrorCode]]:
    with pytest.raises(CommandRejection) as rejection:
        decide()
    return [(e.field, e.code) for e in rejection.value.errors]


def request(by: str = IDENTIFIER, to: str = RECEIVER) -> RequestCaseTransfer:
    return RequestCaseTransfer(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=CASE,
        to_agency=to,
        reason=TransferReason.CAPACITY,
    )


def close(by: str = IDENTIFIER) -> CloseCase:
    return CloseCase(
        command_id=uuid.uuid4(), agency_id=by, case_id=CASE, reason=ClosureReason.REPATRIATED
    )


def accept(by: str = RECEIVER) -> AcceptCaseTransfer:
    return AcceptCaseTransfer(command_id=uuid.uuid4(), agency_id=by, case_id=CASE)


def reopen(by: str = IDENTIFIER) -> ReopenCase:
    return ReopenCase(
        command_id=uuid.uuid4(), agency_id=by, case_id=CASE, reason=ReopenReason.NEW_NEEDS
    )


# --- the fold ------------------------------------------------------------------------------


def test_the_identifying_agency_owns_an_active_case_with_no_transfer_pending() -> None:
    case = case_of()
    assert (case.owner, case.status, case.pending_transfer) == (
        IDENTIFIER,
        CaseStatus.ACTIVE,
        None,
    )


def test_ownership_moves_only_when_the_transfer_is_accepted() -> None:
    pending = case_of(REQUESTED)
    assert pending.owner == IDENTIFIER and pending.pending_transfer == REQUESTED
    moved = case_of(REQUESTED, TRANSFERRED)
    assert moved.owner == RECEIVER and moved.pending_transfer is None
    kept = case_of(REQUESTED, DECLINED)
    assert kept.owner == IDENTIFIER and kept.pending_transfer is None


def test_closing_and_reopening_set_the_status() -> None:
    assert case_of(CLOSED).status is CaseStatus.CLOSED
    assert case_of(CLOSED, REOPENED).status is CaseStatus.ACTIVE


@pytest.mark.parametrize(
    ("events", "agency_id", "may"),
    [
        ((), IDENTIFIER, True),
        ((), COORDINATING_BODY, True),
        ((), RECEIVER, False),
        ((REQUESTED,), RECEIVER, False),  # asked, not yet the owner
        ((REQUESTED, TRANSFERRED), RECEIVER, True),
        ((REQUESTED, TRANSFERRED), IDENTIFIER, False),  # the former owner
        ((REQUESTED, TRANSFERRED), COORDINATING_BODY, True),
    ],
)
def test_the_owner_or_the_coordinating_body_manages_a_case(
    events: tuple[Event, ...], agency_id: str, may: bool
) -> None:
    assert may_manage(case_of(*events), agency(agency_id)) is may


# --- the decisions -------------------------------------------------------------------------


def test_a_transfer_request_names_the_owner_it_is_from() -> None:
    by_coordinator = request(by=COORDINATING_BODY)
    [event] = decide_request_transfer(
        case_of(), by_coordinator, agency(COORDINATING_BODY), agency(RECEIVER)
    )
    assert isinstance(event, CaseTransferRequested)
    assert (event.from_agency, event.to_agency, event.requested_by) == (
        IDENTIFIER,
        RECEIVER,
        COORDINATING_BODY,
    )


@pytest.mark.parametrize(
    ("events", "by", "to", "error"),
    [
        ((), "kg-health-bishkek", RECEIVER, ("agency_id", ErrorCode.NOT_AUTHORISED)),
        ((), IDENTIFIER, IDENTIFIER, ("to_agency", ErrorCode.INVALID_FIELD)),
        ((), IDENTIFIER, "kg-legal-aid-bishkek", ("to_agency", ErrorCode.INVALID_FIELD)),
        ((), IDENTIFIER, COORDINATING_BODY, ("to_agency", ErrorCode.INVALID_FIELD)),
        ((REQUESTED,), IDENTIFIER, "kg-health-bishkek", ("case_id", ErrorCode.INVALID_STATE)),
        ((CLOSED,), IDENTIFIER, RECEIVER, ("case_id", ErrorCode.INVALID_STATE)),
    ],
)
def test_refused_transfer_requests(
    events: tuple[Event, ...], by: str, to: str, error: tuple[str, ErrorCode]
) -> None:
    case = case_of(*events)
    assert refused(
        lambda: decide_request_transfer(case, request(by, to), agency(by), agency(to))
    ) == [error]


def test_a_transfer_to_an_agency_not_in_the_registry_is_refused() -> None:
    command = request(to="kg-nobody")
    assert refused(
        lambda: decide_request_transfer(case_of(), command, agency(IDENTIFIER), None)
    ) == [("to_agency", ErrorCode.UNKNOWN_AGENCY)]


def test_only_the_addressee_answers_a_pending_transfer() -> None:
    case = case_of(REQUESTED)
    for other in (IDENTIFIER, COORDINATING_BODY, "kg-health-bishkek"):
        answer, sender = accept(other), agency(other)
        assert refused(lambda: decide_accept_transfer(case, answer, sender)) == [  # noqa: B023 (called at once)
            ("agency_id", ErrorCode.NOT_AUTHORISED)
        ]
    [moved] = decide_accept_transfer(case, accept(), agency(RECEIVER))
    assert moved == TRANSFERRED
    decline = DeclineCaseTransfer(
        command_id=uuid.uuid4(),
        agency_id=RECEIVER,
        case_id=CASE,
        reason=TransferDeclineReason.NO_CAPACITY,
    )
    assert decide_decline_transfer(case, decline, agency(RECEIVER)) == [DECLINED]
    assert refused(lambda: decide_decline_transfer(case_of(), decline, agency(RECEIVER))) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]


def test_a_case_closes_only_without_active_referrals_and_once() -> None:
    case = case_of()
    active = [uuid.uuid4()]
    assert refused(lambda: decide_close(case, close(), agency(IDENTIFIER), active)) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    [closed] = decide_close(case, close(), agency(IDENTIFIER), [])
    assert isinstance(closed, CaseClosed) and closed.owner == IDENTIFIER
    assert refused(lambda: decide_close(case_of(CLOSED), close(), agency(IDENTIFIER), [])) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]


def test_only_a_closed_case_reopens_and_an_erased_one_never() -> None:
    assert refused(lambda: decide_reopen(case_of(), reopen(), agency(IDENTIFIER))) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    [reopened] = decide_reopen(
        case_of(CLOSED), reopen(COORDINATING_BODY), agency(COORDINATING_BODY)
    )
    assert isinstance(reopened, CaseReopened) and reopened.reopened_by == COORDINATING_BODY
    erased = CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.RETENTION_ENDED)
    gone: Case = case_of(CLOSED, erased)
    assert refused(lambda: decide_reopen(gone, reopen(), agency(IDENTIFIER))) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    assert refused(lambda: decide_reopen(case_of(CLOSED), reopen(RECEIVER), agency(RECEIVER))) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]

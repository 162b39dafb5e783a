"""Review of a non-identification: the rules as pure functions, and their registration.

A representative of the person (an NGO or the ombudsperson, `Sender.REPRESENTATIVE`) asks
that a case recorded `victim.not_identified` be reviewed (`case.review_requested`); one open
review per case. The coordinating body decides it, or names an agency that may identify to
decide it (`case.review_assigned`). Upheld: the non-identification stands. Overturned: the
answers given must meet the criteria, and `victim.identified` is recorded on the same case
(the screening's profile and sealed personal data copied), so the referrals follow.

The reviews of a case are folded from its own history (`fold_reviews`), next to `fold_case`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from contracts.commands import (
    AssignIdentificationReview,
    Consent,
    DecideIdentificationReview,
    RequestIdentificationReview,
)
from contracts.events import (
    CaseReviewAssigned,
    CaseReviewDecided,
    CaseReviewRequested,
    ConsentRecorded,
    Event,
    VictimNotIdentified,
)
from contracts.replies import ErrorCode, reject
from contracts.vocabulary import AgencyKind, ReviewOutcome
from services.agencies.registry import Agency
from services.case.case import Case, fold_case
from services.case.ids import review_id_for_command
from services.identifier.domain import IDENTIFYING_KINDS, _case_for, unmet_criteria
from services.identifier.presumed import outcome_from
from services.runtime.messaging import ServiceHost
from services.runtime.writer import Outcome

# Who speaks for the person in a review (the service table's Sender.REPRESENTATIVE agrees).
REPRESENTATIVE_KINDS = frozenset({AgencyKind.NGO, AgencyKind.OMBUDSPERSON})


@dataclass(frozen=True)
class Review:
    request: CaseReviewRequested
    assigned_to: str | None = None
    decision: CaseReviewDecided | None = None

    @property
    def is_open(self) -> bool:
        return self.decision is None


def fold_reviews(events: Sequence[Event]) -> dict[UUID, Review]:
    """The case's reviews by id, in the order they were requested."""
    reviews: dict[UUID, Review] = {}
    for event in events:
        if isinstance(event, CaseReviewRequested):
            reviews.setdefault(event.review_id, Review(event))
        elif isinstance(event, CaseReviewAssigned) and event.review_id in reviews:
            reviews[event.review_id] = replace(
                reviews[event.review_id], assigned_to=event.assigned_to
            )
        elif isinstance(event, CaseReviewDecided) and event.review_id in reviews:
            reviews[event.review_id] = replace(reviews[event.review_id], decision=event)
    return reviews


def _anyone(_case: Case, _agency: Agency) -> bool:
    return True  # who may act is checked by each rule below, by role or by the review


def _reviewable(case: Case | None, agency: Agency | None) -> Case:
    """The case exists, is neither erased nor closed; the sender is registered (the same
    checks as every other command on a case)."""
    return _case_for(case, agency, may=_anyone)


def _review(reviews: dict[UUID, Review], review_id: UUID) -> Review:
    """An open review of the case."""
    review = reviews.get(review_id)
    if review is None:
        raise reject("review_id", ErrorCode.UNKNOWN_ID, "no such review of the case")
    if not review.is_open:
        raise reject("review_id", ErrorCode.INVALID_STATE, "the review was decided")
    return review


def decide_review_request(
    case: Case | None,
    reviews: dict[UUID, Review],
    command: RequestIdentificationReview,
    agency: Agency | None,
    review_id: UUID,
    now: dt.datetime,
) -> list[Event]:
    if agency is not None and agency.kind not in REPRESENTATIVE_KINDS:
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only an NGO or the ombudsperson may ask for a review",
        )
    case = _reviewable(case, agency)
    assert agency is not None  # _reviewable refused an unknown agency
    if not isinstance(case.record, VictimNotIdentified):
        raise reject(
            "case_id",
            ErrorCode.INVALID_STATE,
            "only a case recorded as not identified may be reviewed",
        )
    if any(r.is_open for r in reviews.values()):
        raise reject("case_id", ErrorCode.INVALID_STATE, "a review of the case is already open")
    return [
        CaseReviewRequested(
            case_id=command.case_id,
            review_id=review_id,
            requested_by=agency.id,
            grounds=command.grounds,
            recorded_at=now,
        )
    ]


def decide_review_assign(
    case: Case | None,
    reviews: dict[UUID, Review],
    command: AssignIdentificationReview,
    agency: Agency | None,
    to_agency: Agency | None,
) -> list[Event]:
    """The coordinating body names who decides: an agency that may identify, neither the
    one whose decision is reviewed nor the requester (nobody reviews their own position)."""
    if agency is not None and agency.kind is not AgencyKind.COORDINATING_BODY:
        raise reject(
            "agency_id", ErrorCode.NOT_AUTHORISED, "only the coordinating body assigns a review"
        )
    case = _reviewable(case, agency)
    review = _review(reviews, command.review_id)
    if to_agency is None:
        raise reject("to_agency", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if not to_agency.may_identify or to_agency.kind not in IDENTIFYING_KINDS:
        raise reject(
            "to_agency", ErrorCode.INVALID_FIELD, "only an agency that may identify decides"
        )
    if to_agency.id in (case.record.agency_id, review.request.requested_by):
        raise reject(
            "to_agency",
            ErrorCode.INVALID_FIELD,
            "neither the agency whose decision is reviewed nor the requester may decide",
        )
    if to_agency.id == review.assigned_to:
        raise reject("to_agency", ErrorCode.INVALID_FIELD, "the review is already assigned to it")
    return [
        CaseReviewAssigned(
            case_id=command.case_id,
            review_id=command.review_id,
            assigned_to=to_agency.id,
            assigned_by=command.agency_id,
        )
    ]


def consent_in_force(consent: ConsentRecorded | None) -> Consent:
    """The consent an identification carries, from the case's latest `consent.recorded` (a
    non-identification records none of its own): what it withholds is never shared."""
    if consent is None:
        return Consent(purposes=frozenset())
    return Consent(
        withheld_fields=frozenset(consent.withheld_fields),
        purposes=frozenset(consent.purposes),
        recipients=frozenset(consent.recipients),
        recipient_kinds=frozenset(consent.recipient_kinds),
        recipient_countries=frozenset(consent.recipient_countries),
        legal_basis=consent.legal_basis,
        expires_at=consent.expires_at,
    )


def decide_review_decision(
    case: Case | None,
    reviews: dict[UUID, Review],
    command: DecideIdentificationReview,
    agency: Agency | None,
) -> list[Event]:
    case = _reviewable(case, agency)
    assert agency is not None
    review = _review(reviews, command.review_id)
    if agency.kind is not AgencyKind.COORDINATING_BODY and agency.id != review.assigned_to:
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only the coordinating body or the agency it assigned decides the review",
        )
    decided = CaseReviewDecided(
        case_id=command.case_id,
        review_id=command.review_id,
        outcome=command.outcome,
        decided_by=agency.id,
    )
    if command.outcome is ReviewOutcome.UPHELD:
        findings = {
            "criteria": command.criteria is not None,
            "forms_of_exploitation": command.forms_of_exploitation is not None,
            "needs": bool(command.needs),
        }
        for name, given in findings.items():
            if given:
                raise reject(name, ErrorCode.INVALID_FIELD, "given only when overturned")
        return [decided]
    if command.criteria is None:
        raise reject("criteria", ErrorCode.INVALID_FIELD, "required when overturned")
    unmet = unmet_criteria(command.criteria, case.record.is_child)
    if unmet:
        names = ", ".join(u.criterion for u in unmet)
        raise reject(
            "criteria", ErrorCode.INVALID_FIELD, f"the answers do not meet the criteria: {names}"
        )
    identified = outcome_from(
        case.record,
        command.criteria,
        command.forms_of_exploitation,
        command.needs,
        consent_in_force(case.consent),
    )
    return [decided, identified]


# --- registration (the identifier's service.py calls `register`) -----------------------------

ReviewRule = Callable[[Case | None, dict[UUID, Review], Any, Agency | None], list[Event]]


def register(host: ServiceHost, service: str) -> None:
    """Serve the three review commands on the case aggregate, writing as `service`."""
    runtime = host.runtime

    def on_review(rule: ReviewRule) -> Callable[[Any], Awaitable[tuple[str, Outcome]]]:
        async def handle(command: Any) -> tuple[str, Outcome]:
            case_id = str(command.case_id)
            agency = runtime.registry.get(command.agency_id)

            def decide(history: Any) -> list[Event]:
                events = [e.event for e in history.events]
                return rule(fold_case(events), fold_reviews(events), command, agency)

            outcome = await runtime.writer(service).execute(
                "case",
                case_id,
                cause=str(command.command_id),
                correlation=str(command.command_id),
                decide=decide,
            )
            return case_id, outcome

        return handle

    host.command(
        RequestIdentificationReview,
        on_review(
            lambda case, reviews, cmd, agency: decide_review_request(
                case, reviews, cmd, agency, review_id_for_command(cmd.command_id), runtime.clock()
            )
        ),
    )
    host.command(
        AssignIdentificationReview,
        on_review(
            lambda case, reviews, cmd, agency: decide_review_assign(
                case, reviews, cmd, agency, runtime.registry.get(cmd.to_agency)
            )
        ),
    )
    host.command(DecideIdentificationReview, on_review(decide_review_decision))

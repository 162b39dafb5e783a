"""A case as its events tell it, and who may act on it.

The identifier (consent, erasure, ownership, closure, follow-ups), the referral service
(cross-border transfers) and custody (data releases) all rule on the same folded case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from uuid import UUID

from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseReopened,
    CaseTransferDeclined,
    CaseTransferred,
    CaseTransferRequested,
    ConsentRecorded,
    ConsentWithdrawn,
    Event,
    FollowUpOverdue,
    FollowUpRecorded,
    FollowUpScheduled,
    ScreeningRecord,
)
from contracts.vocabulary import AgencyKind, CaseStatus, ClosureReason, PersonalField
from services.agencies.registry import Agency


@dataclass(frozen=True)
class FollowUp:
    """One scheduled follow-up: pending until recorded, or cancelled by the case's closure.
    `escalated` once reported overdue to the coordinating body (it stays pending)."""

    scheduled: FollowUpScheduled
    recorded: bool = False
    escalated: bool = False
    cancelled: bool = False

    @property
    def pending(self) -> bool:
        return not self.recorded and not self.cancelled


@dataclass(frozen=True)
class Case:
    """What a case's events say: its screening (or reception from abroad), the consent in
    its latest form, whether that consent was withdrawn, whether the case was erased, who
    owns it (the identifying agency until a transfer is accepted), the transfer waiting for
    an answer, and whether it is active or closed."""

    record: ScreeningRecord
    consent: ConsentRecorded | None
    consent_withdrawn: bool
    erased: bool
    owner: str = ""  # fold_case sets it; "" only for a Case built by hand without one
    pending_transfer: CaseTransferRequested | None = None
    status: CaseStatus = CaseStatus.ACTIVE
    followups: Mapping[UUID, FollowUp] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def present_fields(self) -> frozenset[PersonalField]:
        return frozenset(self.record.personal_data)

    @property
    def is_closed(self) -> bool:
        """`closed` or `closed_referred`: every rule on a closed case holds for both."""
        return self.status.is_closed

    @property
    def pending_followups(self) -> tuple[FollowUp, ...]:
        return tuple(f for f in self.followups.values() if f.pending)


def _open_status(case: Case) -> CaseStatus:
    """HTCDS `follow_up` while a scheduled follow-up is pending, else `active`."""
    return CaseStatus.FOLLOW_UP if case.pending_followups else CaseStatus.ACTIVE


def _with_followup(
    case: Case,
    followup_id: UUID,
    *,
    recorded: bool = False,
    escalated: bool = False,
    cancelled: bool = False,
) -> Case:
    """The case with one follow-up marked recorded, escalated or cancelled (an unknown id:
    unchanged)."""
    found = case.followups.get(followup_id)
    if found is None:
        return case
    marked = replace(
        found,
        recorded=found.recorded or recorded,
        escalated=found.escalated or escalated,
        cancelled=found.cancelled or cancelled,
    )
    followups = {**case.followups, followup_id: marked}
    return replace(case, followups=MappingProxyType(followups))


def fold_case(events: Sequence[Event]) -> Case | None:
    """None until the screening; other aggregates' events are ignored. A later consent
    replaces the earlier one and lifts a withdrawal. The screening's agency owns the case
    until a transfer is accepted; an answered transfer is no longer pending. Closing cancels
    the pending follow-ups; a reopened case is `active` again. A later screening record of
    the case is a new outcome of it (`record` follows it)."""
    case: Case | None = None
    for event in events:
        if isinstance(event, ScreeningRecord) and case is not None:
            # A later outcome of the same case (a presumed victim decided, a review
            # overturned): the record changes; owner, consent and status stay.
            case = replace(case, record=event)
        elif isinstance(event, ScreeningRecord):
            case = Case(event, None, False, False, owner=event.agency_id)
        elif case is None:
            continue
        elif isinstance(event, ConsentRecorded):
            case = replace(case, consent=event, consent_withdrawn=False)
        elif isinstance(event, ConsentWithdrawn):
            case = replace(case, consent_withdrawn=True)
        elif isinstance(event, CaseErased):
            case = replace(case, erased=True)
        elif isinstance(event, CaseTransferRequested):
            case = replace(case, pending_transfer=event)
        elif isinstance(event, CaseTransferred):
            case = replace(case, owner=event.to_agency, pending_transfer=None)
        elif isinstance(event, CaseTransferDeclined):
            case = replace(case, pending_transfer=None)
        elif isinstance(event, CaseClosed):
            referred_on = event.reason is ClosureReason.TRANSFERRED_ABROAD
            status = CaseStatus.CLOSED_REFERRED if referred_on else CaseStatus.CLOSED
            for pending in case.pending_followups:
                case = _with_followup(case, pending.scheduled.followup_id, cancelled=True)
            case = replace(case, status=status)
        elif isinstance(event, CaseReopened):
            case = replace(case, status=CaseStatus.ACTIVE)
        elif isinstance(event, FollowUpScheduled):
            followups = {**case.followups, event.followup_id: FollowUp(event)}
            case = replace(case, followups=MappingProxyType(followups))
            case = case if case.is_closed else replace(case, status=_open_status(case))
        elif isinstance(event, FollowUpRecorded):
            case = _with_followup(case, event.followup_id, recorded=True)
            case = case if case.is_closed else replace(case, status=_open_status(case))
        elif isinstance(event, FollowUpOverdue):
            case = _with_followup(case, event.followup_id, escalated=True)
    return case


def is_identifying_agency(case: Case, agency: Agency) -> bool:
    """The agency that screened the case (for a case from abroad, the receiving authority)."""
    return agency.id == case.record.agency_id


def may_act_on(case: Case, agency: Agency) -> bool:
    """The identifying agency or the coordinating body may act on a case: record or withdraw
    consent, erase it, refer it abroad. Nobody else, whatever their kind."""
    return is_identifying_agency(case, agency) or agency.kind is AgencyKind.COORDINATING_BODY


def is_owner(case: Case, agency: Agency) -> bool:
    """The agency that owns the case now: the identifying one, or whoever accepted it since."""
    return agency.id == case.owner


def may_manage(case: Case, agency: Agency) -> bool:
    """The owner or the coordinating body may transfer, close and reopen a case."""
    return is_owner(case, agency) or agency.kind is AgencyKind.COORDINATING_BODY

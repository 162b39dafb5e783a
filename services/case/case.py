"""A case as its events tell it, and who may act on it.

The identifier (consent, erasure, ownership, closure), the referral service (cross-border
transfers) and custody (data releases) all rule on the same folded case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

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
    ScreeningRecord,
)
from contracts.vocabulary import AgencyKind, CaseStatus, PersonalField
from services.agencies.registry import Agency


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

    @property
    def present_fields(self) -> frozenset[PersonalField]:
        return frozenset(self.record.personal_data)


def fold_case(events: Sequence[Event]) -> Case | None:
    """None until the screening; other aggregates' events are ignored. A later consent
    replaces the earlier one and lifts a withdrawal. The screening's agency owns the case
    until a transfer is accepted; an answered transfer is no longer pending. A later
    screening record of the case is a new outcome of it (`record` follows it)."""
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
            case = replace(case, status=CaseStatus.CLOSED)
        elif isinstance(event, CaseReopened):
            case = replace(case, status=CaseStatus.ACTIVE)
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

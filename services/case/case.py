"""A case as its events tell it, and who may act on it.

The identifier (consent, erasure), the referral service (cross-border transfers) and custody
(data releases) all rule on the same folded case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts.events import CaseErased, ConsentRecorded, ConsentWithdrawn, Event, ScreeningRecord
from contracts.vocabulary import AgencyKind, PersonalField
from services.agencies.registry import Agency


@dataclass(frozen=True)
class Case:
    """What a case's events say: its screening (or reception from abroad), the consent in
    its latest form, whether that consent was withdrawn, and whether the case was erased."""

    record: ScreeningRecord
    consent: ConsentRecorded | None
    consent_withdrawn: bool
    erased: bool

    @property
    def present_fields(self) -> frozenset[PersonalField]:
        return frozenset(self.record.personal_data)


def fold_case(events: Sequence[Event]) -> Case | None:
    """None until the screening; other aggregates' events are ignored. A later consent
    replaces the earlier one and lifts a withdrawal."""
    case: Case | None = None
    for event in events:
        if isinstance(event, ScreeningRecord):
            case = Case(event, None, False, False)
        elif case is None:
            continue
        elif isinstance(event, ConsentRecorded):
            case = Case(case.record, event, False, case.erased)
        elif isinstance(event, ConsentWithdrawn):
            case = Case(case.record, case.consent, True, case.erased)
        elif isinstance(event, CaseErased):
            case = Case(case.record, case.consent, case.consent_withdrawn, True)
    return case


def is_identifying_agency(case: Case, agency: Agency) -> bool:
    """The agency that screened the case (for a case from abroad, the receiving authority)."""
    return agency.id == case.record.agency_id


def may_act_on(case: Case, agency: Agency) -> bool:
    """The identifying agency or the coordinating body may act on a case: record or withdraw
    consent, erase it, refer it abroad. Nobody else, whatever their kind."""
    return is_identifying_agency(case, agency) or agency.kind is AgencyKind.COORDINATING_BODY

"""A criminal proceeding as its events tell it (aggregate `proceeding`): the cases it
concerns, the complaint, the investigation, the charges, the court's decision and how each
victim took part. Pure: the identifier's rules (services/identifier/proceeding_rules.py) and
anything else that reads a proceeding fold it here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from uuid import UUID

from contracts.events import (
    ChargesBrought,
    ComplaintFiled,
    CourtDecisionRecorded,
    Event,
    InvestigationOpened,
    VictimParticipationRecorded,
)
from contracts.vocabulary import VictimParticipation

# How far a proceeding got, in order: a later stage implies the earlier ones happened (a
# proceeding opened by an investigation has no complaint on the hub, still "complaint" < it).
STAGES = ("complaint", "investigation", "charged", "decided")


@dataclass(frozen=True)
class Proceeding:
    proceeding_id: UUID
    case_ids: frozenset[UUID] = frozenset()
    complaint: ComplaintFiled | None = None
    investigation: InvestigationOpened | None = None
    charges: ChargesBrought | None = None
    decision: CourtDecisionRecorded | None = None
    participation: Mapping[UUID, frozenset[VictimParticipation]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def stage(self) -> str:
        if self.decision is not None:
            return "decided"
        if self.charges is not None:
            return "charged"
        return "investigation" if self.investigation is not None else "complaint"

    @property
    def opened_on(self) -> dt.date:
        """The first date on the hub: the complaint's, else the investigation's."""
        if self.complaint is not None:
            return self.complaint.filed_on
        assert self.investigation is not None, "a proceeding opens with one or the other"
        return self.investigation.opened_on

    @property
    def last_date(self) -> dt.date:
        """The date of the latest stage: a later stage may not be dated before it."""
        if self.charges is not None:
            return self.charges.charged_on
        if self.investigation is not None:
            return self.investigation.opened_on
        return self.opened_on


def fold_proceeding(events: Sequence[Event]) -> Proceeding | None:
    """None until the complaint or the investigation that opens it; each event adds its
    stage, its cases, or a victim's participation (merged with what was recorded before)."""
    found: Proceeding | None = None
    for event in events:
        if isinstance(event, ComplaintFiled) and found is None:
            found = Proceeding(event.proceeding_id, frozenset(event.case_ids), complaint=event)
        elif isinstance(event, InvestigationOpened):
            base = found or Proceeding(event.proceeding_id)
            found = replace(base, case_ids=base.case_ids | set(event.case_ids), investigation=event)
        elif found is None:
            continue
        elif isinstance(event, ChargesBrought):
            found = replace(found, charges=event)
        elif isinstance(event, CourtDecisionRecorded):
            found = replace(found, decision=event)
        elif isinstance(event, VictimParticipationRecorded):
            merged = found.participation.get(event.case_id, frozenset()) | set(event.participation)
            participation = {**found.participation, event.case_id: merged}
            found = replace(found, participation=MappingProxyType(participation))
    return found

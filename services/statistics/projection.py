"""The statistics projection: the event stream folded into non-identifying facts.

`apply(state, envelope)` is pure (no I/O, no clock): it reads one event and updates the facts
it owns. What it keeps per screened person is the clear profile the screening already
carries (region, sex, age band, citizenship, forms of exploitation, ...) and the times the
hub recorded; never a sealed field, never anything an event does not carry in clear. Opaque
ids (case, referral, shelter) are kept only to apply later events of the same aggregate; on
`case.erased` the case id is dropped and the case stays in the counts as an anonymous fact.

A new event type adds a handler to `_HANDLERS` and, if it is a new unit of count, a list in
`StatsState`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from contracts.envelope import Envelope, EnvelopeAttributes, unwrap_event
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseReceivedFromAbroad,
    CaseReopened,
    CaseTransferred,
    ChargesBrought,
    ComplaintFiled,
    ConsentRecorded,
    ConsentWithdrawn,
    CourtDecisionRecorded,
    Event,
    FollowUpRecorded,
    FollowUpScheduled,
    InvestigationOpened,
    LikelyDuplicateFound,
    NeedUnmet,
    ReferralAccepted,
    ReferralCompleted,
    ReferralCrossBorderAccepted,
    ReferralCrossBorderClosed,
    ReferralCrossBorderCompleted,
    ReferralCrossBorderDeclined,
    ReferralCrossBorderReceived,
    ReferralCrossBorderRefused,
    ReferralCrossBorderRequested,
    ReferralDeclined,
    ReferralEscalated,
    ReferralRequested,
    ReferralRevoked,
    ReferralWaitlisted,
    ScreeningRecord,
    ShelterAdmitted,
    ShelterDischarged,
    ShelterPlacementRefused,
    ShelterRegistered,
    ShelterWaitlisted,
    ShelterWaitlistLeft,
    VictimIdentified,
    VictimNotIdentified,
    VictimParticipationRecorded,
    VictimPresumed,
)
from contracts.vocabulary import DataPurpose, LegalBasis
from services.case.consent import basis_valid_for, unexpired


@dataclass
class CaseFacts:
    """One screened person, as the statistics see them: no id, no personal data."""

    status: str  # identified | not_identified | presumed: the case's latest outcome
    interviewed_on: dt.date
    recorded_at: dt.datetime  # when the hub recorded the decision
    region: str
    sector: str
    agency_kind: str
    sex: str
    age_band: str
    is_child: bool
    citizenship: str
    country_of_exploitation: str | None
    forms: tuple[str, ...]
    first_service_at: dt.datetime | None = None
    duplicate_suspected: bool = False
    erased: bool = False
    # none (never presumed) | pending | decided_identified | decided_not_identified
    presumption: str = "none"
    # The case lifecycle: closure (its latest), reopenings, ownership transfers accepted.
    closed_at: dt.datetime | None = None
    closure_reason: str | None = None
    reopened: int = 0
    transfers: int = 0
    follow_ups_pending: set[UUID] = field(default_factory=set)  # at the stream's end
    follow_ups_recorded: int = 0
    # Criminal proceedings naming the case: the furthest stage any of them reached
    # (none | complaint | investigation | charged | decided).
    proceeding_stage: str = "none"
    # The data standard (HTCDS): codes the screening recorded; empty when not recorded.
    gender: str | None = None  # None: not recorded, the sex stands for it
    vulnerabilities: tuple[str, ...] = ()
    means: tuple[str, ...] = ()
    recruitment_methods: tuple[str, ...] = ()
    online_platforms: tuple[str, ...] = ()
    methods_of_control: tuple[str, ...] = ()
    labour_industries: tuple[str, ...] = ()
    sexual_exploitation_types: tuple[str, ...] = ()


@dataclass
class ConsentFacts:
    purposes: frozenset[str]
    expires_at: dt.datetime | None
    legal_basis: LegalBasis = LegalBasis.INFORMED_CONSENT

    def allows_statistics(self, at: dt.datetime, is_child: bool = False) -> bool:
        """Unexpired, covering statistics, and on a basis valid for the person: a child's own
        consent is not (services/case/consent.py `basis_valid_for`)."""
        return (
            unexpired(self.expires_at, at)
            and DataPurpose.STATISTICS.value in self.purposes
            and basis_valid_for(is_child, self.legal_basis)
        )


@dataclass
class ReferralFacts:
    case: CaseFacts | None  # None when the case was never seen (a stream that starts late)
    service: str
    region: str
    sex: str
    age_band: str
    is_child: bool
    placement_category: str | None
    requested_at: dt.datetime
    attempt: int = 0  # 0: the need's first referral; 1, 2, ...: re-referrals of the need
    outcome: str = "pending"  # pending | accepted | waitlisted | declined | completed | revoked
    decline_reason: str | None = None
    escalated: bool = False


@dataclass
class PlacementFacts:
    """One shelter referral as the shelter saw it: waiting, admitted, discharged."""

    case: CaseFacts | None
    category: str
    shelter_region: str
    first_seen_at: dt.datetime
    waitlisted_at: dt.datetime | None = None
    admitted_at: dt.datetime | None = None
    discharged_at: dt.datetime | None = None
    left_list_at: dt.datetime | None = None
    refused: bool = False


@dataclass
class ShelterFacts:
    region: str
    capacity: dict[str, int]


@dataclass
class CrossBorderFacts:
    """One cross-border referral as this hub saw it. Outgoing: sent (or refused before
    leaving) to `country`, answered by the destination's outcome codes. Incoming: received
    from `country`, answered by what the local provider did with it. Never the other side's
    local details: only the codes the hubs exchange."""

    case: CaseFacts | None
    country: str
    direction: str  # outgoing | incoming
    purpose: str
    service: str
    outcome: str  # requested | refused | received | accepted | declined | completed | closed
    requested_at: dt.datetime
    answered_at: dt.datetime | None = None  # the first answer (received counts for outgoing)


@dataclass
class UnmetNeedFacts:
    """A need nobody could take (`need.unmet`): what it was, where, for whom, and why."""

    case: CaseFacts | None
    service: str
    region: str
    category: str
    reason: str
    recorded_at: dt.datetime


PROCEEDING_STAGES = ("none", "complaint", "investigation", "charged", "decided")


@dataclass
class ProceedingFacts:
    """One criminal proceeding: its stages, article, outcome and sentence band, and the
    cases (victims) it concerns as their facts (no case id). Dated by its first date."""

    cases: list[CaseFacts]
    opened_on: dt.date
    complaint_by: str = "none"  # the kind of agency that filed the complaint, or none
    investigated_by: str | None = None  # the kind of agency that opened the investigation
    article: str = "none"  # the latest: the decision's, the charges', the investigation's
    stage: str = "complaint"
    defendants: int = 0
    outcome: str = "pending"  # pending | conviction | acquittal | dismissal | reclassified
    sentence: str = "none"
    decided_on: dt.date | None = None
    participation: set[str] = field(default_factory=set)


@dataclass
class StatsState:
    cases: dict[UUID, CaseFacts] = field(default_factory=dict)
    erased_cases: list[CaseFacts] = field(default_factory=list)
    consents: dict[UUID, ConsentFacts] = field(default_factory=dict)
    referrals: dict[UUID, ReferralFacts] = field(default_factory=dict)
    placements: dict[tuple[str, UUID], PlacementFacts] = field(default_factory=dict)
    shelters: dict[str, ShelterFacts] = field(default_factory=dict)
    cross_border: dict[UUID, CrossBorderFacts] = field(default_factory=dict)  # by referral
    # Cases received from abroad are not identifications of this country: kept apart from
    # `cases` (and its counts), only to decide whether their cross-border facts are public.
    received_cases: dict[UUID, CaseFacts] = field(default_factory=dict)
    incoming: dict[UUID, CrossBorderFacts] = field(default_factory=dict)  # by received case
    unmet_needs: dict[UUID, UnmetNeedFacts] = field(default_factory=dict)  # by need id
    proceedings: dict[UUID, ProceedingFacts] = field(default_factory=dict)  # by proceeding
    events_applied: int = 0
    last_sequence: int = 0  # NRM_EVENTS stream sequence of the last event applied
    ignored: Counter[str] = field(default_factory=Counter)
    last_event_at: dt.datetime | None = None
    country: str = ""  # the hub's, from its events' source (urn:nrm-hub:<country>:<service>)

    def all_cases(self) -> list[CaseFacts]:
        return [*self.cases.values(), *self.erased_cases]

    def publishable_cases(self, at: dt.datetime) -> set[int]:
        """Which cases may appear in public statistics at `at` (as Python object ids, never
        case ids): their consent in force (the latest `consent.recorded`, not withdrawn, not
        expired) covers `statistics`, given by someone who may (a child's guardian, not the
        child). An erased case never does."""
        return {
            id(facts)
            for case_id, facts in (*self.cases.items(), *self.received_cases.items())
            if (consent := self.consents.get(case_id)) is not None
            and consent.allows_statistics(at, facts.is_child)
        }


Handler = Callable[[StatsState, Any, EnvelopeAttributes], None]


# A case's outcomes only move forward: a presumption is decided, a non-identification may be
# overturned on review, an identification is final.
_OUTCOME_ORDER = ("presumed", "not_identified", "identified")


def _outcome(event: ScreeningRecord) -> str:
    if isinstance(event, VictimPresumed):
        return "presumed"
    return "identified" if isinstance(event, VictimIdentified) else "not_identified"


def _screened(state: StatsState, event: ScreeningRecord, envelope: EnvelopeAttributes) -> None:
    status = _outcome(event)
    facts = state.cases.get(event.case_id)
    if facts is not None:
        # The case counts once, by its latest outcome; a redelivered or re-read earlier
        # outcome changes nothing.
        if _OUTCOME_ORDER.index(status) > _OUTCOME_ORDER.index(facts.status):
            if facts.status == "presumed":
                facts.presumption = f"decided_{status}"
            facts.status = status
            facts.forms = tuple(sorted({f.value for f in event.forms_of_exploitation}))
            facts.means = _codes(event.means)
        return
    state.cases[event.case_id] = _case_facts(event, envelope, status)


def _codes(values: Iterable[StrEnum]) -> tuple[str, ...]:
    return tuple(sorted({v.value for v in values}))


def _case_facts(event: ScreeningRecord, envelope: EnvelopeAttributes, status: str) -> CaseFacts:
    return CaseFacts(
        status=status,
        presumption="pending" if status == "presumed" else "none",
        interviewed_on=event.interviewed_on,
        recorded_at=envelope.time,
        region=event.region.value,
        sector=event.sector.value,
        agency_kind=event.agency_kind.value,
        sex=event.sex.value,
        age_band=event.age_band.value,
        is_child=event.is_child,
        citizenship=event.citizenship,
        country_of_exploitation=event.country_of_exploitation,
        forms=tuple(sorted({f.value for f in event.forms_of_exploitation})),
        gender=event.gender.value if event.gender else None,
        vulnerabilities=_codes(event.vulnerabilities),
        means=_codes(event.means),
        recruitment_methods=_codes(event.recruitment_methods),
        online_platforms=_codes(event.online_platforms),
        methods_of_control=_codes(event.methods_of_control),
        labour_industries=_codes(event.labour_industries),
        sexual_exploitation_types=_codes(event.sexual_exploitation_types),
    )


def _received(
    state: StatsState, event: CaseReceivedFromAbroad, envelope: EnvelopeAttributes
) -> None:
    if event.case_id in state.received_cases:
        return
    facts = _case_facts(event, envelope, "received_from_abroad")
    state.received_cases[event.case_id] = facts
    state.incoming[event.case_id] = state.cross_border[event.origin_referral_id] = CrossBorderFacts(
        case=facts,
        country=event.origin,
        direction="incoming",
        purpose=event.purpose.value,
        service=event.service.value,
        outcome="received",
        requested_at=envelope.time,
    )


def _incoming_of(state: StatsState, event: Any) -> CrossBorderFacts | None:
    """The incoming cross-border referral a local referral serves: the received case's
    referral for the service it was sent for."""
    facts = state.incoming.get(event.case_id)
    referral = state.referrals.get(event.referral_id)
    if facts is None or referral is None or referral.service != facts.service:
        return None
    return facts


def _outgoing(outcome: str) -> Handler:
    """A cross-border referral sent (`requested`) or refused before it left (`refused`)."""

    def handle(
        state: StatsState,
        event: ReferralCrossBorderRequested | ReferralCrossBorderRefused,
        envelope: EnvelopeAttributes,
    ) -> None:
        state.cross_border.setdefault(
            event.referral_id,
            CrossBorderFacts(
                case=state.cases.get(event.case_id),
                country=event.destination,
                direction="outgoing",
                purpose=event.purpose.value,
                service=event.service.value,
                outcome=outcome,
                requested_at=envelope.time,
            ),
        )

    return handle


def _answered_abroad(outcome: str) -> Handler:
    def handle(state: StatsState, event: Any, envelope: EnvelopeAttributes) -> None:
        facts = state.cross_border.get(event.referral_id)
        if facts is not None and facts.outcome != "closed":  # nothing follows a closure
            facts.outcome = outcome
            facts.answered_at = facts.answered_at or envelope.time

    return handle


def _consent_recorded(
    state: StatsState, event: ConsentRecorded, envelope: EnvelopeAttributes
) -> None:
    # Kept even before the case is seen (events of one case arrive in order, but a consent
    # could be recorded in the same batch); only cases in `cases` are ever published.
    state.consents[event.case_id] = ConsentFacts(
        purposes=frozenset(p.value for p in event.purposes),
        expires_at=event.expires_at,
        legal_basis=event.legal_basis,
    )


def _consent_withdrawn(
    state: StatsState, event: ConsentWithdrawn, envelope: EnvelopeAttributes
) -> None:
    state.consents.pop(event.case_id, None)


def _erased(state: StatsState, event: CaseErased, envelope: EnvelopeAttributes) -> None:
    state.consents.pop(event.case_id, None)
    facts = state.cases.pop(event.case_id, None)
    if facts is not None:
        facts.erased = True
        state.erased_cases.append(facts)


def _duplicate(
    state: StatsState, event: LikelyDuplicateFound, envelope: EnvelopeAttributes
) -> None:
    facts = state.cases.get(event.case_id)
    if facts is not None:
        facts.duplicate_suspected = True


def _closed(state: StatsState, event: CaseClosed, envelope: EnvelopeAttributes) -> None:
    incoming = state.incoming.get(event.case_id)
    if incoming is not None:  # a case received from abroad, closed here
        incoming.outcome = "closed"
        incoming.answered_at = incoming.answered_at or envelope.time
    facts = state.cases.get(event.case_id)
    if facts is not None:
        facts.closed_at, facts.closure_reason = envelope.time, event.reason.value
        facts.follow_ups_pending.clear()  # closing cancels them (services/case/case.py)


def _follow_up_scheduled(
    state: StatsState, event: FollowUpScheduled, envelope: EnvelopeAttributes
) -> None:
    facts = state.cases.get(event.case_id)
    if facts is not None and facts.closed_at is None:
        facts.follow_ups_pending.add(event.followup_id)


def _follow_up_recorded(
    state: StatsState, event: FollowUpRecorded, envelope: EnvelopeAttributes
) -> None:
    facts = state.cases.get(event.case_id)
    if facts is not None and event.followup_id in facts.follow_ups_pending:
        facts.follow_ups_pending.discard(event.followup_id)
        facts.follow_ups_recorded += 1


def _reopened(state: StatsState, event: CaseReopened, envelope: EnvelopeAttributes) -> None:
    facts = state.cases.get(event.case_id)
    if facts is not None and facts.closed_at is not None:
        facts.closed_at, facts.closure_reason = None, None
        facts.reopened += 1


def _transferred(state: StatsState, event: CaseTransferred, envelope: EnvelopeAttributes) -> None:
    facts = state.cases.get(event.case_id)
    if facts is not None:
        facts.transfers += 1


def _requested(state: StatsState, event: ReferralRequested, envelope: EnvelopeAttributes) -> None:
    if event.referral_id in state.referrals:
        return
    state.referrals[event.referral_id] = ReferralFacts(
        case=state.cases.get(event.case_id) or state.received_cases.get(event.case_id),
        service=event.service.value,
        region=event.region.value,
        sex=event.sex.value,
        age_band=event.age_band.value,
        is_child=event.is_child,
        placement_category=event.placement_category.value if event.placement_category else None,
        requested_at=event.requested_at,
        attempt=event.attempt,
    )


def _served(referral: ReferralFacts, at: dt.datetime) -> None:
    case = referral.case
    if case is not None and (case.first_service_at is None or at < case.first_service_at):
        case.first_service_at = at


def _referral_outcome(outcome: str) -> Handler:
    def handle(state: StatsState, event: Any, envelope: EnvelopeAttributes) -> None:
        referral = state.referrals.get(event.referral_id)
        if referral is None:
            return
        referral.outcome = outcome
        if isinstance(event, ReferralDeclined):
            referral.decline_reason = event.reason.value
        if isinstance(event, ReferralAccepted | ReferralCompleted):
            _served(referral, envelope.time)
        incoming = _incoming_of(state, event)
        if incoming is not None and outcome in ("accepted", "declined", "completed"):
            incoming.outcome = outcome
            incoming.answered_at = incoming.answered_at or envelope.time

    return handle


def _escalated(state: StatsState, event: ReferralEscalated, envelope: EnvelopeAttributes) -> None:
    referral = state.referrals.get(event.referral_id)
    if referral is not None:
        referral.escalated = True


def _registered(state: StatsState, event: ShelterRegistered, envelope: EnvelopeAttributes) -> None:
    state.shelters[event.shelter_id] = ShelterFacts(
        region=event.region.value, capacity={c.value: n for c, n in event.capacity.items()}
    )


def _placement(state: StatsState, event: Any, envelope: EnvelopeAttributes) -> PlacementFacts:
    key = (event.shelter_id, event.referral_id)
    placement = state.placements.get(key)
    if placement is None:
        shelter = state.shelters.get(event.shelter_id)
        placement = PlacementFacts(
            case=state.cases.get(event.case_id),
            category=event.category.value,
            shelter_region=shelter.region if shelter else "unknown",
            first_seen_at=envelope.time,
        )
        state.placements[key] = placement
    return placement


def _waitlisted(state: StatsState, event: ShelterWaitlisted, envelope: EnvelopeAttributes) -> None:
    placement = _placement(state, event, envelope)
    placement.waitlisted_at = placement.waitlisted_at or envelope.time


def _admitted(state: StatsState, event: ShelterAdmitted, envelope: EnvelopeAttributes) -> None:
    placement = _placement(state, event, envelope)
    placement.admitted_at = placement.admitted_at or envelope.time


def _discharged(state: StatsState, event: ShelterDischarged, envelope: EnvelopeAttributes) -> None:
    placement = _placement(state, event, envelope)
    placement.discharged_at = placement.discharged_at or envelope.time


def _left_list(state: StatsState, event: ShelterWaitlistLeft, envelope: EnvelopeAttributes) -> None:
    placement = _placement(state, event, envelope)
    placement.left_list_at = placement.left_list_at or envelope.time


def _refused(
    state: StatsState, event: ShelterPlacementRefused, envelope: EnvelopeAttributes
) -> None:
    _placement(state, event, envelope).refused = True


def _unmet(state: StatsState, event: NeedUnmet, envelope: EnvelopeAttributes) -> None:
    if event.need_id in state.unmet_needs:  # one need counts once, whatever records it again
        return
    state.unmet_needs[event.need_id] = UnmetNeedFacts(
        case=state.cases.get(event.case_id),
        service=event.service.value,
        region=event.region.value,
        category=event.category.value,
        reason=event.reason.value,
        recorded_at=event.recorded_at,
    )


def _advance(facts: ProceedingFacts, stage: str) -> None:
    """The proceeding and each of its cases reach `stage` (never go back)."""
    order = PROCEEDING_STAGES.index
    if order(stage) > order(facts.stage):
        facts.stage = stage
    for case in facts.cases:
        if order(stage) > order(case.proceeding_stage):
            case.proceeding_stage = stage


def _link(state: StatsState, facts: ProceedingFacts, case_ids: Iterable[UUID]) -> None:
    for case_id in case_ids:
        case = state.cases.get(case_id)
        if case is not None and all(case is not c for c in facts.cases):
            facts.cases.append(case)
    _advance(facts, facts.stage)


def _complaint(state: StatsState, event: ComplaintFiled, envelope: EnvelopeAttributes) -> None:
    if event.proceeding_id in state.proceedings:
        return
    facts = ProceedingFacts(cases=[], opened_on=event.filed_on)
    facts.complaint_by = event.filer_kind.value
    state.proceedings[event.proceeding_id] = facts
    _link(state, facts, event.case_ids)


def _investigation(
    state: StatsState, event: InvestigationOpened, envelope: EnvelopeAttributes
) -> None:
    facts = state.proceedings.get(event.proceeding_id)
    if facts is None:
        facts = ProceedingFacts(cases=[], opened_on=event.opened_on)
        state.proceedings[event.proceeding_id] = facts
    facts.investigated_by = event.agency_kind.value
    if facts.article == "none":
        facts.article = event.article.value
    _link(state, facts, event.case_ids)
    _advance(facts, "investigation")


def _charged(state: StatsState, event: ChargesBrought, envelope: EnvelopeAttributes) -> None:
    facts = state.proceedings.get(event.proceeding_id)
    if facts is not None:
        facts.article, facts.defendants = event.article.value, event.defendants
        _advance(facts, "charged")


def _decided(state: StatsState, event: CourtDecisionRecorded, envelope: EnvelopeAttributes) -> None:
    facts = state.proceedings.get(event.proceeding_id)
    if facts is not None:
        facts.article, facts.outcome = event.article.value, event.outcome.value
        facts.sentence, facts.decided_on = event.sentence.value, event.decided_on
        _advance(facts, "decided")


def _participated(
    state: StatsState, event: VictimParticipationRecorded, envelope: EnvelopeAttributes
) -> None:
    facts = state.proceedings.get(event.proceeding_id)
    if facts is not None:
        facts.participation |= {p.value for p in event.participation}


_HANDLERS: dict[type[Event], Handler] = {
    VictimIdentified: _screened,
    VictimNotIdentified: _screened,
    VictimPresumed: _screened,
    ConsentRecorded: _consent_recorded,
    ConsentWithdrawn: _consent_withdrawn,
    CaseErased: _erased,
    LikelyDuplicateFound: _duplicate,
    CaseClosed: _closed,
    CaseReopened: _reopened,
    CaseTransferred: _transferred,
    FollowUpScheduled: _follow_up_scheduled,
    FollowUpRecorded: _follow_up_recorded,
    ReferralRequested: _requested,
    ReferralAccepted: _referral_outcome("accepted"),
    ReferralWaitlisted: _referral_outcome("waitlisted"),
    ReferralDeclined: _referral_outcome("declined"),
    ReferralCompleted: _referral_outcome("completed"),
    ReferralRevoked: _referral_outcome("revoked"),
    ReferralEscalated: _escalated,
    ShelterRegistered: _registered,
    ShelterWaitlisted: _waitlisted,
    ShelterAdmitted: _admitted,
    ShelterDischarged: _discharged,
    ShelterWaitlistLeft: _left_list,
    ShelterPlacementRefused: _refused,
    NeedUnmet: _unmet,
    CaseReceivedFromAbroad: _received,
    ReferralCrossBorderRequested: _outgoing("requested"),
    ReferralCrossBorderRefused: _outgoing("refused"),
    ReferralCrossBorderReceived: _answered_abroad("received"),
    ReferralCrossBorderAccepted: _answered_abroad("accepted"),
    ReferralCrossBorderDeclined: _answered_abroad("declined"),
    ReferralCrossBorderCompleted: _answered_abroad("completed"),
    ReferralCrossBorderClosed: _answered_abroad("closed"),
    ComplaintFiled: _complaint,
    InvestigationOpened: _investigation,
    ChargesBrought: _charged,
    CourtDecisionRecorded: _decided,
    VictimParticipationRecorded: _participated,
}


def apply(state: StatsState, envelope: Envelope, sequence: int | None = None) -> StatsState:
    """Fold one event into the statistics. Events the statistics do not use (access
    decisions, agency keys) are counted in `ignored` by type and otherwise left alone.
    `sequence`, the event's stream sequence, makes re-reading harmless: an event at or
    before the last sequence applied is skipped."""
    if sequence is not None:
        if sequence <= state.last_sequence:
            return state
        state.last_sequence = sequence
    try:
        event = unwrap_event(envelope)
    except ValueError:  # an unknown type or version, or data that is not the contract
        state.ignored[f"unreadable {envelope.type}"] += 1
        return state
    _fold(state, event, envelope)
    return state


def apply_event(
    state: StatsState, event: Event, envelope: EnvelopeAttributes, sequence: int | None = None
) -> StatsState:
    """`apply` for an event already read from its envelope (`read_current_event`, which
    reads both in one pass: the replay of the whole stream)."""
    if sequence is not None:
        if sequence <= state.last_sequence:
            return state
        state.last_sequence = sequence
    _fold(state, event, envelope)
    return state


def _fold(state: StatsState, event: Event, envelope: EnvelopeAttributes) -> None:
    handler = _HANDLERS.get(type(event))
    if handler is None:
        state.ignored[envelope.type] += 1
    else:
        handler(state, event, envelope)
    state.events_applied += 1
    if not state.country:
        state.country = _hub_country(envelope.source)
    if state.last_event_at is None or envelope.time > state.last_event_at:
        state.last_event_at = envelope.time


def _hub_country(source: str) -> str:
    parts = source.split(":")
    return parts[2] if len(parts) > 3 and parts[:2] == ["urn", "nrm-hub"] else ""


def fold(
    envelopes: Iterable[Envelope | tuple[int, Envelope]], state: StatsState | None = None
) -> StatsState:
    """Apply envelopes in order; `(sequence, envelope)` pairs are applied idempotently."""
    state = state if state is not None else StatsState()
    for item in envelopes:
        if isinstance(item, tuple):
            apply(state, item[1], item[0])
        else:
            apply(state, item)
    return state

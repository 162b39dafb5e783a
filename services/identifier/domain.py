"""Identification rules (Resolution No. 493, identification criteria), as pure functions.

Nothing here knows NATS or keys: `decide_screening` gets the command, the registry entry of
the sending agency and the already-sealed personal data, and returns the event to record or
raises a `CommandRejection`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

from contracts.commands import (
    Consent,
    CriteriaAnswers,
    EraseCase,
    RecordConsent,
    ScreeningInterview,
    WithdrawConsent,
)
from contracts.events import (
    CaseErased,
    ConsentRecorded,
    ConsentWithdrawn,
    Event,
    LikelyDuplicateFound,
    ScreeningRecord,
    UnmetCriterion,
    VictimIdentified,
    VictimNotIdentified,
)
from contracts.replies import ErrorCode, reject
from contracts.sealed import SealedValue
from contracts.vocabulary import AgencyKind, PersonalField, age_band
from services.agencies.registry import Agency
from services.case.case import Case, may_act_on

ADULT_AGE = 18

# Kinds the Counter-Trafficking Law authorises to identify; prosecution bodies are the
# explicit exception. NGOs and international organisations identify only "if agreed", which
# the registry records as `may_identify`.
IDENTIFYING_KINDS = frozenset(AgencyKind) - {
    AgencyKind.PROSECUTION,
    AgencyKind.COORDINATING_BODY,
    AgencyKind.SERVICE_PROVIDER,
}


@dataclass(frozen=True)
class Criterion:
    """One element of the identification criteria and whom it applies to."""

    name: str
    is_met: Callable[[CriteriaAnswers], bool]
    required_for_adult: bool
    required_for_child: bool
    reason: str


# For a child the means element is not required (Palermo Protocol art. 3(c)).
IDENTIFICATION_CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "act",
        lambda a: bool(a.acts),
        required_for_adult=True,
        required_for_child=True,
        reason="no act (recruitment, transportation, transfer, harbouring or receipt) found",
    ),
    Criterion(
        "means",
        lambda a: bool(a.means),
        required_for_adult=True,
        required_for_child=False,
        reason="no means (threat, force, coercion, deception, abuse of vulnerability, ...) found",
    ),
    Criterion(
        "purpose",
        lambda a: bool(a.purposes),
        required_for_adult=True,
        required_for_child=True,
        reason="no purpose of exploitation found",
    ),
)


def unmet_criteria(answers: CriteriaAnswers, is_child: bool) -> tuple[UnmetCriterion, ...]:
    return tuple(
        UnmetCriterion(criterion=c.name, reason=c.reason)
        for c in IDENTIFICATION_CRITERIA
        if (c.required_for_child if is_child else c.required_for_adult) and not c.is_met(answers)
    )


def check_may_identify(agency: Agency | None, agency_id: str) -> Agency:
    """The registry entry of an agency allowed to identify, or a typed rejection."""
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if agency.kind is AgencyKind.PROSECUTION:
        raise reject(
            "agency_id", ErrorCode.NOT_AUTHORISED, "prosecution bodies may not identify victims"
        )
    if agency.kind not in IDENTIFYING_KINDS:
        raise reject(
            "agency_id", ErrorCode.NOT_AUTHORISED, f"a {agency.kind.value} may not identify victims"
        )
    if not agency.may_identify:
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "the agency is not registered as agreed to identify victims",
        )
    return agency


def decide_screening(
    command: ScreeningInterview,
    agency: Agency,
    case_id_hex: str,
    sealed: dict[PersonalField, SealedValue],
) -> ScreeningRecord:
    age = command.age_at_interview()
    is_child = age < ADULT_AGE
    common = {
        "case_id": case_id_hex,
        "agency_id": agency.id,
        "agency_kind": agency.kind,
        "sector": agency.sector,
        "region": command.region,
        "interviewed_on": command.interviewed_on,
        "sex": command.sex,
        "age_band": age_band(age),
        "is_child": is_child,
        "citizenship": command.citizenship,
        "country_of_exploitation": command.country_of_exploitation,
        "forms_of_exploitation": tuple(sorted(command.forms_of_exploitation)),
        "vulnerabilities": tuple(sorted(command.vulnerabilities)),
        "personal_data": sealed,
    }
    unmet = unmet_criteria(command.criteria, is_child)
    if unmet:
        return VictimNotIdentified.model_validate({**common, "unmet_criteria": unmet})
    return VictimIdentified.model_validate(
        {
            **common,
            "purposes": tuple(sorted(command.criteria.purposes)),
            "needs": tuple(sorted(command.needs)),
            "consent": command.consent,
        }
    )


def consent_recorded(
    case_id: UUID | str, consent_id: UUID, recorded_by: str, given_on: dt.date, consent: Consent
) -> ConsentRecorded:
    return ConsentRecorded(
        case_id=UUID(str(case_id)),
        consent_id=consent_id,
        recorded_by=recorded_by,
        legal_basis=consent.legal_basis,
        purposes=tuple(sorted(consent.purposes)),
        recipients=tuple(sorted(consent.recipients)),
        recipient_kinds=tuple(sorted(consent.recipient_kinds)),
        recipient_countries=tuple(sorted(consent.recipient_countries)),
        withheld_fields=tuple(sorted(consent.withheld_fields)),
        given_on=given_on,
        expires_at=consent.expires_at,
    )


def decide_intake(
    command: ScreeningInterview,
    agency: Agency,
    case_id: str,
    consent_id: UUID,
    sealed: dict[PersonalField, SealedValue],
    earlier_cases: Sequence[str],
) -> list[Event]:
    """The events a screening records: the decision, the consent given in the interview, and
    a suspected duplicate when the blind index knew the person from earlier cases."""
    events: list[Event] = [
        decide_screening(command, agency, case_id, sealed),
        consent_recorded(case_id, consent_id, agency.id, command.interviewed_on, command.consent),
    ]
    others = sorted({UUID(c) for c in earlier_cases if c != case_id})
    if others:
        events.append(LikelyDuplicateFound(case_id=UUID(case_id), earlier_case_ids=tuple(others)))
    return events


def _case_for(case: Case | None, case_id: UUID, agency: Agency | None, agency_id: str) -> Case:
    """The case, if it exists, is not erased, and `agency` may act on it: the identifying
    agency or the coordinating body."""
    if case is None:
        raise reject("case_id", ErrorCode.UNKNOWN_ID, "no such case")
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if not may_act_on(case, agency):
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only the identifying agency or the coordinating body may do this",
        )
    if case.erased:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case was erased")
    return case


def decide_record_consent(
    case: Case | None, command: RecordConsent, agency: Agency | None, consent_id: UUID
) -> list[Event]:
    _case_for(case, command.case_id, agency, command.agency_id)
    return [
        consent_recorded(
            command.case_id, consent_id, command.agency_id, command.given_on, command.consent
        )
    ]


def decide_withdraw_consent(
    case: Case | None, command: WithdrawConsent, agency: Agency | None
) -> list[Event]:
    _case_for(case, command.case_id, agency, command.agency_id)
    return [ConsentWithdrawn(case_id=command.case_id, withdrawn_by=command.agency_id)]


def decide_erase(case: Case | None, command: EraseCase, agency: Agency | None) -> list[Event]:
    _case_for(case, command.case_id, agency, command.agency_id)
    return [CaseErased(case_id=command.case_id, erased_by=command.agency_id, reason=command.reason)]

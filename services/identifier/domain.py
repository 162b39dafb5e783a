"""Identification rules (Resolution No. 493, identification criteria), as pure functions.

Nothing here knows NATS or keys: `decide_screening` gets the command, the registry entry of
the sending agency and the already-sealed personal data, and returns the event to record or
raises a `CommandRejection`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contracts.commands import CriteriaAnswers, SubmitScreening
from contracts.events import ScreeningRecord, UnmetCriterion, VictimIdentified, VictimNotIdentified
from contracts.replies import ErrorCode, reject
from contracts.sealed import SealedValue
from contracts.vocabulary import AgencyKind, PersonalField, age_band
from services.agencies.registry import Agency

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
        raise reject(
            "agency_id", ErrorCode.UNKNOWN_AGENCY, f"agency {agency_id!r} is not registered"
        )
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
            f"{agency_id} is not registered as agreed to identify victims",
        )
    return agency


def decide_screening(
    command: SubmitScreening,
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

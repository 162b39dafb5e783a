"""Identification rules (Resolution No. 493, identification criteria), as pure functions.

Nothing here knows NATS or keys: `decide_screening` gets the command, the registry entry of
the sending agency and the already-sealed personal data, and returns the event to record or
raises a `CommandRejection`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from contracts.commands import (
    AcceptCaseTransfer,
    CloseCase,
    Consent,
    CriteriaAnswers,
    DeclineCaseTransfer,
    EraseCase,
    RecordConsent,
    ReopenCase,
    RequestCaseTransfer,
    ScreeningInterview,
    WithdrawConsent,
)
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
    LikelyDuplicateFound,
    ScreeningRecord,
    UnmetCriterion,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.replies import ErrorCode, reject
from contracts.sealed import SealedValue
from contracts.vocabulary import AgencyKind, PersonalField, age_band
from services.agencies.registry import Agency
from services.case.case import Case, may_act_on, may_manage
from services.case.consent import basis_valid_for

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


def standard_fields(command: ScreeningInterview) -> dict[str, Any]:
    """The data-standard (HTCDS) codes of a screening, as its record carries them: the
    criteria's means kept as data, sorted tuples for a stable record."""
    return {
        "gender": command.gender,
        "means": tuple(sorted(command.criteria.means)),
        "recruitment_methods": tuple(sorted(command.recruitment_methods)),
        "online_platforms": tuple(sorted(command.online_platforms)),
        "methods_of_control": tuple(sorted(command.methods_of_control)),
        "labour_industries": tuple(sorted(command.labour_industries)),
        "sexual_exploitation_types": tuple(sorted(command.sexual_exploitation_types)),
    }


def decide_screening(
    command: ScreeningInterview,
    agency: Agency,
    case_id_hex: str,
    sealed: dict[PersonalField, SealedValue],
    decision_due: dt.datetime | None = None,
) -> ScreeningRecord:
    """The screening's outcome. A presumed victim (`command.presumed`) is recorded as such
    whatever the answers so far, with the decision due by `decision_due`."""
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
        **standard_fields(command),
    }
    if command.presumed:
        assert decision_due is not None, "a presumption needs its decision date"
        return VictimPresumed.model_validate(
            {
                **common,
                "needs": tuple(sorted(command.needs)),
                "consent": command.consent,
                "decision_due": decision_due,
            }
        )
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
    decision_due: dt.datetime | None = None,
) -> list[Event]:
    """The events a screening records: the decision (or presumption, due by `decision_due`),
    the consent given in the interview, and a suspected duplicate when the blind index knew
    the person from earlier cases."""
    events: list[Event] = [
        decide_screening(command, agency, case_id, sealed, decision_due),
        consent_recorded(case_id, consent_id, agency.id, command.interviewed_on, command.consent),
    ]
    others = sorted({UUID(c) for c in earlier_cases if c != case_id})
    if others:
        events.append(LikelyDuplicateFound(case_id=UUID(case_id), earlier_case_ids=tuple(others)))
    return events


def _case_for(
    case: Case | None,
    agency: Agency | None,
    *,
    may: Callable[[Case, Agency], bool] = may_act_on,
    who: str = "the identifying agency or the coordinating body",
    closed_ok: bool = False,
) -> Case:
    """The case, if it exists, is not erased, and `agency` may act on it (`who`, by `may`);
    a closed case only if `closed_ok` (erasure, reopening)."""
    if case is None:
        raise reject("case_id", ErrorCode.UNKNOWN_ID, "no such case")
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if not may(case, agency):
        raise reject("agency_id", ErrorCode.NOT_AUTHORISED, f"only {who} may do this")
    if case.erased:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case was erased")
    if case.is_closed and not closed_ok:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case is closed; reopen it first")
    return case


def decide_record_consent(
    case: Case | None, command: RecordConsent, agency: Agency | None, consent_id: UUID
) -> list[Event]:
    case = _case_for(case, agency)
    if not basis_valid_for(case.record.is_child, command.consent.legal_basis):
        raise reject(
            "consent.legal_basis",
            ErrorCode.INVALID_FIELD,
            "a child's consent needs a guardian or another legal basis",
        )
    return [
        consent_recorded(
            command.case_id, consent_id, command.agency_id, command.given_on, command.consent
        )
    ]


def decide_withdraw_consent(
    case: Case | None, command: WithdrawConsent, agency: Agency | None
) -> list[Event]:
    _case_for(case, agency)
    return [ConsentWithdrawn(case_id=command.case_id, withdrawn_by=command.agency_id)]


def decide_erase(case: Case | None, command: EraseCase, agency: Agency | None) -> list[Event]:
    _case_for(case, agency, closed_ok=True)
    return [CaseErased(case_id=command.case_id, erased_by=command.agency_id, reason=command.reason)]


# --- Case lifecycle: ownership, transfer, closure --------------------------------------------


def _managed_case(case: Case | None, agency: Agency | None, *, closed_ok: bool = False) -> Case:
    """As `_case_for`, for what only the case's owner (or the coordinating body) does."""
    owner = "the agency that owns the case or the coordinating body"
    return _case_for(case, agency, may=may_manage, who=owner, closed_ok=closed_ok)


def decide_request_transfer(
    case: Case | None,
    command: RequestCaseTransfer,
    agency: Agency | None,
    to_agency: Agency | None,
) -> list[Event]:
    """Ask another registry agency to take the case over; the owner keeps it meanwhile."""
    case = _managed_case(case, agency)
    if to_agency is None:
        raise reject("to_agency", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if not to_agency.may_identify or to_agency.kind not in IDENTIFYING_KINDS:
        # An owner closes and reopens the case: only agencies that may identify are let to.
        raise reject(
            "to_agency", ErrorCode.INVALID_FIELD, "only an agency that may identify owns a case"
        )
    if to_agency.id == case.owner:
        raise reject("to_agency", ErrorCode.INVALID_FIELD, "the agency already owns the case")
    if case.pending_transfer is not None:
        raise reject(
            "case_id",
            ErrorCode.INVALID_STATE,
            f"a transfer to {case.pending_transfer.to_agency} is waiting for an answer",
        )
    return [
        CaseTransferRequested(
            case_id=command.case_id,
            from_agency=case.owner,
            to_agency=to_agency.id,
            requested_by=command.agency_id,
            reason=command.reason,
        )
    ]


def _pending_for(case: Case | None, agency: Agency | None) -> tuple[Case, CaseTransferRequested]:
    """The case and its pending transfer, answered only by the agency it names."""
    if case is None:
        raise reject("case_id", ErrorCode.UNKNOWN_ID, "no such case")
    if agency is None:
        raise reject("agency_id", ErrorCode.UNKNOWN_AGENCY, "the agency is not in the registry")
    if case.erased:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case was erased")
    if case.is_closed:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case is closed; reopen it first")
    pending = case.pending_transfer
    if pending is None:
        raise reject("case_id", ErrorCode.INVALID_STATE, "no transfer of the case is pending")
    if agency.id != pending.to_agency:
        raise reject(
            "agency_id",
            ErrorCode.NOT_AUTHORISED,
            "only the agency the transfer is addressed to may answer it",
        )
    return case, pending


def decide_accept_transfer(
    case: Case | None, command: AcceptCaseTransfer, agency: Agency | None
) -> list[Event]:
    _, pending = _pending_for(case, agency)
    return [
        CaseTransferred(
            case_id=command.case_id, from_agency=pending.from_agency, to_agency=pending.to_agency
        )
    ]


def decide_decline_transfer(
    case: Case | None, command: DeclineCaseTransfer, agency: Agency | None
) -> list[Event]:
    _, pending = _pending_for(case, agency)
    return [
        CaseTransferDeclined(
            case_id=command.case_id,
            from_agency=pending.from_agency,
            to_agency=pending.to_agency,
            reason=command.reason,
        )
    ]


def decide_close(
    case: Case | None,
    command: CloseCase,
    agency: Agency | None,
    active_referrals: Sequence[UUID],
) -> list[Event]:
    """Close an active case. While referrals of it are active (requested, waitlisted or
    accepted) it closes only if the command names every one of them in `revoke_referrals`:
    `case.closed` carries them and the referral service revokes them. Naming a referral that
    is not an active one of the case is refused."""
    case = _managed_case(case, agency)
    named = set(command.revoke_referrals)
    if named - set(active_referrals):
        raise reject(
            "revoke_referrals",
            ErrorCode.INVALID_FIELD,
            "names a referral that is not an active referral of the case",
        )
    left = sorted(set(active_referrals) - named)
    if left:
        listed = ", ".join(str(r) for r in left)
        raise reject(
            "case_id",
            ErrorCode.INVALID_STATE,
            f"referrals of the case are still active: {listed}",
        )
    return [
        CaseClosed(
            case_id=command.case_id,
            owner=case.owner,
            closed_by=command.agency_id,
            reason=command.reason,
            revoked_referrals=tuple(sorted(named)),
        )
    ]


def decide_reopen(case: Case | None, command: ReopenCase, agency: Agency | None) -> list[Event]:
    case = _managed_case(case, agency, closed_ok=True)
    if not case.is_closed:
        raise reject("case_id", ErrorCode.INVALID_STATE, "the case is not closed")
    return [
        CaseReopened(
            case_id=command.case_id,
            owner=case.owner,
            reopened_by=command.agency_id,
            reason=command.reason,
        )
    ]

"""Presumed victims: the identification decided after the presumption, as pure functions.

`screening.submit` with `presumed: true` records `victim.presumed` (services/identifier/
domain.py `decide_screening`): the referral service refers the urgent needs at once. The
owner of the case (or the coordinating body) later sends `screening.decide`, which records
the outcome on the same case: `victim.identified` or `victim.not_identified`, the profile and
sealed personal data copied from the presumption. `fold_case` follows the latest record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.commands import Consent, CriteriaAnswers, DecideScreening
from contracts.events import (
    Event,
    ScreeningRecord,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.replies import ErrorCode, reject
from contracts.vocabulary import FormOfExploitation, Service
from services.agencies.registry import Agency
from services.case.case import Case
from services.identifier.domain import _managed_case, unmet_criteria


def profile_of(record: ScreeningRecord) -> dict[str, Any]:
    """What every outcome of a case repeats: the screening's profile and its sealed personal
    data, as first recorded (the ciphertexts are copied, nothing is opened)."""
    return {name: getattr(record, name) for name in ScreeningRecord.model_fields}


def outcome_from(
    record: ScreeningRecord,
    criteria: CriteriaAnswers,
    forms: Iterable[FormOfExploitation] | None,
    needs: Iterable[Service],
    consent: Consent,
) -> VictimIdentified | VictimNotIdentified:
    """A new outcome of the case of `record` on `criteria` (a child needs no means)."""
    profile = profile_of(record)
    if forms is not None:
        profile["forms_of_exploitation"] = tuple(sorted(set(forms)))
    profile["means"] = tuple(sorted(criteria.means))  # the means of this outcome's criteria
    unmet = unmet_criteria(criteria, record.is_child)
    if unmet:
        return VictimNotIdentified.model_validate({**profile, "unmet_criteria": unmet})
    return VictimIdentified.model_validate(
        {
            **profile,
            "purposes": tuple(sorted(criteria.purposes)),
            "needs": tuple(sorted(set(needs))),
            "consent": consent,
        }
    )


def decide_screening_outcome(
    case: Case | None, command: DecideScreening, agency: Agency | None
) -> list[Event]:
    """Decide a presumed victim's identification: only on a presumed case, by its owner or
    the coordinating body. The needs and forms not given are those of the presumption; the
    consent is the one given in the interview (a later `consent.record` stays in force for
    releases, custody reads it)."""
    case = _managed_case(case, agency)
    record = case.record
    if not isinstance(record, VictimPresumed):
        raise reject(
            "case_id", ErrorCode.INVALID_STATE, "only a presumed victim's case awaits a decision"
        )
    needs = record.needs if command.needs is None else command.needs
    return [
        outcome_from(record, command.criteria, command.forms_of_exploitation, needs, record.consent)
    ]

"""Every id the hub derives from a cause instead of drawing at random, so that a retried
command or a redelivered event lands on the same aggregate and writes the same event ids."""

from __future__ import annotations

import uuid

from contracts.vocabulary import Service

# Changing this changes every derived id: stored histories would no longer be found again.
ID_NAMESPACE = uuid.UUID("6f0b8a52-43c4-4f43-9d7e-1a1c0d8e3b21")


def derived_id(*parts: str) -> uuid.UUID:
    """A stable id from what makes it unique (e.g. case id + service)."""
    return uuid.uuid5(ID_NAMESPACE, "/".join(parts))


def derived_event_id(cause: str, aggregate: str, aggregate_id: str, index: int) -> uuid.UUID:
    """The `index`-th event `cause` wrote on one aggregate."""
    return uuid.uuid5(ID_NAMESPACE, f"{cause}/{aggregate}/{aggregate_id}/{index}")


def case_id_for_screening(command_id: uuid.UUID | str) -> uuid.UUID:
    """A screening opens one case: a retried screening finds it again."""
    return derived_id("case", str(command_id))


def consent_id_for_command(command_id: uuid.UUID | str) -> uuid.UUID:
    """The consent given in a screening or recorded by `consent.record`."""
    return derived_id("consent", str(command_id))


def referral_id_for(case_id: uuid.UUID | str, service: Service) -> uuid.UUID:
    """The first referral (attempt 0) of a case's need for `service`: what identification
    writes. Later attempts are named by `need.referred` (`referral_id_for_attempt`)."""
    return derived_id("referral", str(case_id), service.value)


def referral_id_for_attempt(case_id: uuid.UUID | str, service: Service, attempt: int) -> uuid.UUID:
    """The referral of the `attempt`-th referral of a need: attempt 0 keeps the id stored
    histories already hold; each later one is derived from the need and its number."""
    if attempt == 0:
        return referral_id_for(case_id, service)
    return derived_id("referral", str(need_id_for(case_id, service)), str(attempt))


def need_id_for(case_id: uuid.UUID | str, service: Service) -> uuid.UUID:
    """A case has one need per service: its unmet-need facts land on one aggregate."""
    return derived_id("need", str(case_id), service.value)


def followup_id_for_command(command_id: uuid.UUID | str) -> uuid.UUID:
    """A `followup.schedule` schedules one follow-up: a retry finds it again."""
    return derived_id("followup", str(command_id))


def review_id_for_command(command_id: uuid.UUID | str) -> uuid.UUID:
    """The review of a non-identification opened by `identification.review_request`."""
    return derived_id("review", str(command_id))


def attestation_id_for(command_id: uuid.UUID | str) -> uuid.UUID:
    """An `attestation.issue` signs one attestation: a retry answers the same one."""
    return derived_id("attestation", str(command_id))


def proceeding_id_for_command(command_id: uuid.UUID | str) -> uuid.UUID:
    """A `proceeding.file_complaint` (or an investigation opened without one) opens one
    criminal proceeding: a retry finds it again."""
    return derived_id("proceeding", str(command_id))

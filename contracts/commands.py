"""Commands: requests an agency sends over NATS request/reply, version 1.

Every command carries `command_id`, a UUID the sender picks once and reuses on every retry:
the hub derives the ids of the events it writes from it, so a retried command is answered
with the same result and writes nothing twice. `agency_id` names the sending agency as
listed in the agency registry.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.vocabulary import (
    Act,
    AgencyId,
    CountryCode,
    DeclineReason,
    DeliveryUnit,
    DischargeReason,
    FormOfExploitation,
    Means,
    PersonalField,
    Purpose,
    Region,
    RevokeReason,
    Service,
    Sex,
    ShelterCategory,
    Vulnerability,
)

# Free text is personal data: bounded, and only ever stored sealed.
PersonalText = Annotated[
    str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)
]
ShortPersonalText = Annotated[
    str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)
]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    NAME: ClassVar[str]
    VERSION: ClassVar[int] = 1

    command_id: UUID = Field(description="Idempotency key chosen by the sender, reused on retry")
    agency_id: AgencyId = Field(description="The sending agency, as listed in the registry")


class PersonalData(BaseModel):
    """What identifies the person. Sealed field by field before anything is stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_name: ShortPersonalText
    date_of_birth: dt.date | None = None
    document_number: ShortPersonalText | None = None
    phone: ShortPersonalText | None = None
    address: ShortPersonalText | None = None
    current_location: ShortPersonalText | None = None
    narrative: PersonalText | None = None

    def present_fields(self) -> dict[PersonalField, str]:
        values = self.model_dump(exclude_none=True, mode="json")
        return {PersonalField(name): str(value) for name, value in values.items()}


class CriteriaAnswers(BaseModel):
    """The interviewer's findings on the three elements of the identification criteria."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    acts: frozenset[Act] = Field(default=frozenset(), description="Act element answers")
    means: frozenset[Means] = Field(default=frozenset(), description="Means element answers")
    purposes: frozenset[Purpose] = Field(
        default=frozenset(), description="Purpose-of-exploitation element answers"
    )


class Consent(BaseModel):
    """What the person agreed to in the interview. Assistance never depends on it beyond the
    services the person declined; withheld fields are never shared with any provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    declined_services: frozenset[Service] = frozenset()
    withheld_fields: frozenset[PersonalField] = frozenset()


class SubmitScreening(Command):
    """A screening interview by an identifying agency (Resolution No. 493, SOP on screening,
    identification and referral)."""

    NAME: ClassVar[str] = "screening.submit"

    interviewed_on: dt.date
    region: Region
    sex: Sex
    age: int | None = Field(
        default=None, ge=0, le=120, description="Age in years; or give personal_data.date_of_birth"
    )
    citizenship: CountryCode = Field(description="ISO 3166-1 alpha-2; XX when stateless/unknown")
    country_of_exploitation: CountryCode | None = None
    criteria: CriteriaAnswers
    forms_of_exploitation: frozenset[FormOfExploitation] = frozenset()
    needs: frozenset[Service] = frozenset()
    vulnerabilities: frozenset[Vulnerability] = frozenset()
    consent: Consent = Consent()
    personal_data: PersonalData

    @model_validator(mode="after")
    def _age_is_known(self) -> SubmitScreening:
        if self.age is None and self.personal_data.date_of_birth is None:
            raise ValueError("give age or personal_data.date_of_birth")
        dob = self.personal_data.date_of_birth
        if dob is not None and dob > self.interviewed_on:
            raise ValueError("personal_data.date_of_birth is after interviewed_on")
        return self

    def age_at_interview(self) -> int:
        dob = self.personal_data.date_of_birth
        if dob is None:
            assert self.age is not None  # guaranteed by the validator
            return self.age
        day = self.interviewed_on
        return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


class AcceptReferral(Command):
    NAME: ClassVar[str] = "referral.accept"

    referral_id: UUID


class DeclineReferral(Command):
    NAME: ClassVar[str] = "referral.decline"

    referral_id: UUID
    reason: DeclineReason


class DeliveredItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service: Service
    quantity: int = Field(ge=1, le=10_000)
    unit: DeliveryUnit


class CompleteReferral(Command):
    NAME: ClassVar[str] = "referral.complete"

    referral_id: UUID
    delivered: tuple[DeliveredItem, ...] = Field(min_length=1, max_length=50)


class RevokeReferral(Command):
    NAME: ClassVar[str] = "referral.revoke"

    referral_id: UUID
    reason: RevokeReason


class RegisterShelter(Command):
    """Registers (or re-registers, with new capacity) a shelter run by `agency_id`."""

    NAME: ClassVar[str] = "shelter.register"

    capacity: dict[ShelterCategory, Annotated[int, Field(ge=0, le=10_000)]] = Field(
        min_length=1, description="Beds per category the shelter takes"
    )


class DischargeFromShelter(Command):
    NAME: ClassVar[str] = "shelter.discharge"

    referral_id: UUID = Field(description="The referral the person was admitted on")
    reason: DischargeReason


ALL_COMMANDS: tuple[type[Command], ...] = (
    SubmitScreening,
    AcceptReferral,
    DeclineReferral,
    CompleteReferral,
    RevokeReferral,
    RegisterShelter,
    DischargeFromShelter,
)

"""Replies to commands. Sent in the CloudEvents envelope with type `command.accepted` or
`command.rejected`. A rejection names each offending field and why; it never echoes the
submitted values (they may be personal data)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.public_key_sealing import SealedToKey
from contracts.sealed import SealedValue
from contracts.vocabulary import AccessRefusal, AttestationCheckResult, TransferRefusal


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_AGENCY = "unknown_agency"
    NOT_AUTHORISED = "not_authorised"
    UNKNOWN_ID = "unknown_id"
    INVALID_STATE = "invalid_state"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="Dotted path of the offending field; '' for the whole body")
    code: ErrorCode
    reason: str


class CommandAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "command.accepted"

    status: Literal["accepted"] = "accepted"
    command_id: UUID
    aggregate_id: str
    event_ids: tuple[UUID, ...]
    duplicate: bool = Field(
        default=False, description="True when this command_id had already been applied"
    )
    likely_duplicate_of: tuple[UUID, ...] = Field(
        default=(),
        description="screening.submit: earlier cases with the same normalised name and date "
        "of birth (blind index), for the identifying agency to check",
    )


class CommandRejected(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "command.rejected"

    status: Literal["rejected"] = "rejected"
    command_id: UUID | None = None
    errors: tuple[FieldError, ...] = Field(min_length=1)


class CommandRejection(Exception):
    """Raised by domain code to reject a command; becomes a CommandRejected reply."""

    def __init__(self, *errors: FieldError) -> None:
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors


def reject(field: str, code: ErrorCode, reason: str) -> CommandRejection:
    return CommandRejection(FieldError(field=field, code=code, reason=reason))


class AccessReleased(BaseModel):
    """The answer to a granted `access.request`: the keys of the released fields, sealed to
    the requesting agency's registered key (`contracts.public_key_sealing`, info
    `nrm-release/1|case_id|request_id|agency_id`). The sealed content is the JSON
    {"key_version": <kv>, "field_keys": {<field>: <base64 32-byte field key>}}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "access.released"

    status: Literal["released"] = "released"
    command_id: UUID = Field(description="The request id")
    case_id: UUID
    fields: tuple[str, ...]
    key_version: int = Field(ge=1)
    sealed_field_keys: SealedToKey
    sealed_fields: dict[str, SealedValue] = Field(
        description="The released fields as stored (still sealed), so the agency need not read "
        "the event stream; open each with its field key"
    )


class AccessDenied(BaseModel):
    """The answer to a refused `access.request`. Unlike `command.rejected` the request was
    valid and its refusal is recorded (an `access.refused` event, audited)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "access.denied"

    status: Literal["denied"] = "denied"
    command_id: UUID = Field(description="The request id")
    case_id: UUID
    reason: AccessRefusal
    event_ids: tuple[UUID, ...] = Field(description="The recorded access.refused event")


class TransferRefused(BaseModel):
    """The answer to a refused `referral.cross_border`: the request was valid, the rules
    refused it, the refusal is recorded (`referral.cross_border_refused`) and nothing left."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "cross_border.refused"

    status: Literal["refused"] = "refused"
    command_id: UUID
    referral_id: UUID
    reason: TransferRefusal
    event_ids: tuple[UUID, ...] = Field(description="The recorded refusal event")


class AttestationCredential(BaseModel):
    """The answer to an accepted `attestation.issue`: the credential to hand to the person
    (docs/ATTESTATION.md). Not personal data: it names nobody and carries no document number,
    only a salted, slow hash of it. A retried issuance answers the same credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "attestation.credential"

    status: Literal["issued"] = "issued"
    command_id: UUID
    aggregate_id: str = Field(description="The status list the attestation is on")
    attestation_id: UUID
    case_id: UUID
    status_index: int = Field(ge=0)
    expires_at: dt.datetime
    bound: bool = Field(description="Whether it carries a document binding")
    credential: str = Field(description="SD-JWT VC text (compact JWS + '~'), Ed25519-signed")
    event_ids: tuple[UUID, ...]
    duplicate: bool = False


class AttestationStatus(BaseModel):
    """The answer to `attestation.check`: whether the attestation is in force now, as the hub
    knows it (recorded as `attestation.checked`). Ids, a code and a date only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str] = "attestation.status"

    status: Literal["checked"] = "checked"
    command_id: UUID
    attestation_id: UUID
    result: AttestationCheckResult
    expires_at: dt.datetime
    event_ids: tuple[UUID, ...]
    duplicate: bool = False

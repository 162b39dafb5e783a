"""Cross-border packages: what one country's hub sends another's over the link, version 1.

A package is a JSON object (not a CloudEvent) sent on `nrm.xb.<from>.<to>.pkg` with the
header `Nats-Msg-Id: <package_id>`; the receiver stores it, then acknowledges with
`{"package_id": ...}` on `nrm.xb.<to>.<from>.ack` (see docs/CROSSBORDER.md). Two kinds:

- `referral`: origin -> destination. The non-identifying profile in clear, the minimal
  personal data sealed to the destination hub's key (`contracts.public_key_sealing`, info
  `nrm-xb/1|<package_id>|<origin>|<destination>`, plaintext the JSON object
  {"<field>": "<value>"} of the fields listed in `fields`).
- `answer`: destination -> origin. What became of the referral; never personal data.
- `notice`: origin -> destination. The person's consent changed, or the case was erased, after
  the transfer: ids and codes only (what the consent covers at the destination now).
- `notice_applied`: destination -> origin. The destination applied that notice.

Countries are ISO 3166-1 alpha-2 in upper case here; subjects use the lower-case form.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.public_key_sealing import SealedToKey
from contracts.vocabulary import (
    AgeBand,
    AgencyId,
    CountryCode,
    DataPurpose,
    DeclineReason,
    FormOfExploitation,
    PersonalField,
    Service,
    Sex,
    Vulnerability,
)

FORMAT_VERSION = 1


def package_info(package_id: str, origin: str, destination: str) -> bytes:
    """HPKE info for a referral package's personal data: binds it to package and route."""
    return f"nrm-xb/{FORMAT_VERSION}|{package_id}|{origin}|{destination}".encode()


def pkg_subject(origin: str, destination: str) -> str:
    """Where origin's hub sends packages to destination (lower-case country codes)."""
    return f"nrm.xb.{origin.lower()}.{destination.lower()}.pkg"


def ack_subject(receiver: str, sender: str) -> str:
    """Where `receiver` acknowledges the packages it stored from `sender`."""
    return f"nrm.xb.{receiver.lower()}.{sender.lower()}.ack"


class AnswerStatus(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    COMPLETED = "completed"
    CLOSED = "closed"  # the destination closed the case it received


class NoticeKind(StrEnum):
    """What changed at the origin after a transfer."""

    WITHDRAWN = "withdrawn"  # consent withdrawn: no further release at the destination
    NARROWED = "narrowed"  # a new consent covers less there (purposes, expiry, the country)
    EXPIRED = "expired"  # the new consent has already expired
    ERASED = "erased"  # the case was erased: the destination erases its copy


class Profile(BaseModel):
    """The clear, non-identifying profile: enough to route and to plan care."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sex: Sex
    age_band: AgeBand
    is_child: bool
    citizenship: CountryCode
    forms_of_exploitation: tuple[FormOfExploitation, ...]
    vulnerabilities: tuple[Vulnerability, ...]


class PackageBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    package_id: UUID = Field(description="Unique; the receiver drops a package it already has")
    origin: CountryCode = Field(description="The sending hub's country")
    destination: CountryCode = Field(description="The receiving hub's country")
    referral_id: UUID = Field(description="The origin hub's cross-border referral")
    sent_at: dt.datetime


class ReferralPackage(PackageBase):
    kind: Literal["referral"] = "referral"
    purpose: DataPurpose
    service: Service
    authority_id: AgencyId = Field(description="The destination authority the package is for")
    profile: Profile
    fields: tuple[PersonalField, ...] = Field(description="Fields inside personal_data")
    personal_data: SealedToKey = Field(description="The minimal dataset, sealed to destination")
    consent_purposes: tuple[DataPurpose, ...] = Field(
        description="What the person's consent covers at the destination"
    )
    consent_expires_at: dt.datetime | None


class AnswerPackage(PackageBase):
    kind: Literal["answer"] = "answer"
    status: AnswerStatus
    reason: DeclineReason | None = Field(default=None, description="Given when declined")

    @model_validator(mode="after")
    def _reason_when_declined(self) -> AnswerPackage:
        if (self.status is AnswerStatus.DECLINED) != (self.reason is not None):
            raise ValueError("reason is given exactly when the status is declined")
        return self


class NoticePackage(PackageBase):
    """Origin -> destination: what the person's consent covers at the destination now, or
    that the case was erased. `referral_id` is the origin's referral the case came with."""

    kind: Literal["notice"] = "notice"
    notice: NoticeKind
    consent_purposes: tuple[DataPurpose, ...] = Field(
        default=(),
        description="When narrowed: what the consent covers at the destination now (empty: "
        "nothing, the destination is no longer named or no purpose it had remains)",
    )
    consent_expires_at: dt.datetime | None = Field(
        default=None, description="When narrowed: when the narrowed consent ends"
    )

    @model_validator(mode="after")
    def _consent_only_when_narrowed(self) -> NoticePackage:
        narrowed = self.notice is NoticeKind.NARROWED
        if not narrowed and (self.consent_purposes or self.consent_expires_at is not None):
            raise ValueError("consent_purposes and consent_expires_at go with narrowed only")
        return self


class NoticeAppliedPackage(PackageBase):
    """Destination -> origin: the notice `notice_id` was applied to the case received."""

    kind: Literal["notice_applied"] = "notice_applied"
    notice_id: UUID = Field(description="The notice package applied")
    notice: NoticeKind


AnyPackage = ReferralPackage | AnswerPackage | NoticePackage | NoticeAppliedPackage
Package = Annotated[AnyPackage, Field(discriminator="kind")]


class PackageEnvelope(BaseModel):
    """Parses either kind of package from the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: Package


class PackageAck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    package_id: UUID


def parse_package(raw: bytes) -> AnyPackage:
    return PackageEnvelope.model_validate({"package": json.loads(raw)}).package

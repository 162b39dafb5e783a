"""Loading and querying the agency registry (pure; the file is read once at start)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.public_key_sealing import public_key_from_b64
from contracts.vocabulary import (
    AgencyId,
    AgencyKind,
    DataPurpose,
    PersonalField,
    Region,
    Sector,
    Service,
    ShelterCategory,
)


class Agency(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: AgencyId
    name: str = Field(min_length=1, max_length=200)
    kind: AgencyKind
    sector: Sector
    region: Region
    services: frozenset[Service] = frozenset()
    may_identify: bool = Field(
        description="Authorised to identify: state bodies by law, NGOs and IOs if agreed"
    )
    shelter_categories: frozenset[ShelterCategory] = frozenset()

    @model_validator(mode="after")
    def _shelter_fields_agree(self) -> Agency:
        if (Service.SHELTER in self.services) != bool(self.shelter_categories):
            raise ValueError("shelter_categories must be given exactly when services has shelter")
        return self


class Peer(BaseModel):
    """A partner country's hub this hub may send cross-border referrals to (the data-sharing
    allow-list): its receiving authority, its public key for packages, and per purpose the
    minimal dataset that may be sent. A purpose not listed is not allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    country: str = Field(pattern=r"^[a-z]{2}$", description="The peer hub's country, lower case")
    authority_id: AgencyId = Field(description="The peer's receiving authority")
    public_key: str | None = Field(
        default=None,
        description="Base64 raw X25519 key of the peer hub (its intake key); None until the "
        "two countries exchanged keys: nothing is sent before",
    )
    purposes: dict[DataPurpose, frozenset[PersonalField]] = Field(
        description="Allowed purposes and the fields each may send (the minimal dataset)"
    )

    @model_validator(mode="after")
    def _key_is_x25519(self) -> Peer:
        if self.public_key is not None:
            public_key_from_b64(self.public_key)
        return self

    @property
    def code(self) -> str:
        """ISO 3166-1 alpha-2, upper case, as consent and packages name countries."""
        return self.country.upper()


class AgencyRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["nrm-agency-registry"] = "nrm-agency-registry"
    version: int = Field(ge=1, description="Bumped on every change to the file")
    country: str = Field(pattern=r"^[a-z]{2}$")
    coordinating_body: AgencyId = Field(description="Where overdue referrals are escalated")
    agencies: tuple[Agency, ...] = Field(min_length=1)
    peers: tuple[Peer, ...] = Field(
        default=(), description="Partner hubs for cross-border referral (allow-list)"
    )

    @model_validator(mode="after")
    def _ids_are_unique_and_known(self) -> AgencyRegistry:
        ids = [a.id for a in self.agencies]
        if len(ids) != len(set(ids)):
            raise ValueError("agency ids must be unique")
        if self.coordinating_body not in ids:
            raise ValueError("coordinating_body is not a listed agency")
        countries = [p.country for p in self.peers]
        if len(countries) != len(set(countries)) or self.country in countries:
            raise ValueError("peers must be distinct countries other than this one")
        return self

    def get(self, agency_id: str) -> Agency | None:
        return next((a for a in self.agencies if a.id == agency_id), None)

    def peer(self, country: str) -> Peer | None:
        return next((p for p in self.peers if p.country == country.lower()), None)

    def providers_of(self, service: Service) -> tuple[Agency, ...]:
        return tuple(a for a in self.agencies if service in a.services)


def load_registry(path: Path | None = None, country: str = "kg") -> AgencyRegistry:
    """The registry at `path`, or the packaged registry of `country` (kg, kz, uz)."""
    if path is None:
        text = resources.files("services.agencies").joinpath(f"{country}.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return AgencyRegistry.model_validate_json(text)

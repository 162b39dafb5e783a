"""Loading and querying the agency registry (pure; the file is read once at start)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.vocabulary import AgencyId, AgencyKind, Region, Sector, Service, ShelterCategory


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


class AgencyRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["nrm-agency-registry"] = "nrm-agency-registry"
    version: int = Field(ge=1, description="Bumped on every change to the file")
    country: str = Field(pattern=r"^[a-z]{2}$")
    coordinating_body: AgencyId = Field(description="Where overdue referrals are escalated")
    agencies: tuple[Agency, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_are_unique_and_known(self) -> AgencyRegistry:
        ids = [a.id for a in self.agencies]
        if len(ids) != len(set(ids)):
            raise ValueError("agency ids must be unique")
        if self.coordinating_body not in ids:
            raise ValueError("coordinating_body is not a listed agency")
        return self

    def get(self, agency_id: str) -> Agency | None:
        return next((a for a in self.agencies if a.id == agency_id), None)

    def providers_of(self, service: Service) -> tuple[Agency, ...]:
        return tuple(a for a in self.agencies if service in a.services)


def load_registry(path: Path | None = None) -> AgencyRegistry:
    """The registry at `path`, or the packaged Kyrgyz registry."""
    if path is None:
        text = resources.files("services.agencies").joinpath("kg.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return AgencyRegistry.model_validate_json(text)

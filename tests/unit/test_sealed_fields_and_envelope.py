"""The sealed-field format and the envelope's version handling."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from contracts.envelope import schema_uri, unwrap_event, wrap_event
from contracts.events import ShelterRegistered, UnknownEventError, decode_event_data
from contracts.sealed import SealedValueError, open_sealed, seal
from contracts.vocabulary import Region, ShelterCategory
from services.runtime.logging import REDACTED, redact_personal_data

KEY = bytes(range(32))
CASE = str(uuid.uuid4())


def test_a_sealed_value_opens_only_where_it_was_sealed() -> None:
    sealed = seal(KEY, CASE, "full_name", 1, "Canary Person")
    assert "Canary" not in sealed.model_dump_json()
    assert open_sealed(KEY, CASE, "full_name", sealed) == "Canary Person"
    with pytest.raises(SealedValueError) as other_field:
        open_sealed(KEY, CASE, "phone", sealed)
    with pytest.raises(SealedValueError):
        open_sealed(KEY, str(uuid.uuid4()), "full_name", sealed)
    with pytest.raises(SealedValueError):
        open_sealed(KEY, CASE, "full_name", sealed.model_copy(update={"kv": 2}))
    with pytest.raises(SealedValueError):
        open_sealed(bytes(32), CASE, "full_name", sealed)
    assert "Canary" not in str(other_field.value)


def test_same_value_seals_differently_each_time() -> None:
    assert seal(KEY, CASE, "phone", 1, "+996").ct != seal(KEY, CASE, "phone", 1, "+996").ct


def _registered() -> ShelterRegistered:
    return ShelterRegistered(
        shelter_id="kg-ngo-bishkek-mens-shelter",
        region=Region.BISHKEK_CITY,
        capacity={ShelterCategory.MEN: 3},
    )


def test_envelope_round_trip_names_type_version_and_aggregate() -> None:
    event = _registered()
    envelope = wrap_event(
        event,
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:shelter",
        time=dt.datetime.now(dt.UTC),
        correlation_id="c",
        causation_id="c",
    )
    assert envelope.dataschema == schema_uri("shelter.registered", 1)
    assert envelope.subject == "kg-ngo-bishkek-mens-shelter"
    assert unwrap_event(envelope) == event


def test_old_versions_are_upcast_on_read_never_rewritten() -> None:
    stored_v0: dict[str, Any] = {"shelter_id": "kg-ngo-bishkek-mens-shelter", "beds": {"men": 3}}

    def v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "shelter_id": data["shelter_id"],
            "region": "bishkek_city",
            "capacity": data["beds"],
        }

    upcasters = {("shelter.registered", 0): v0_to_v1}
    assert decode_event_data("shelter.registered", 0, stored_v0, upcasters) == _registered()
    with pytest.raises(UnknownEventError, match="no upcaster"):
        decode_event_data("shelter.registered", 0, stored_v0, {})
    with pytest.raises(UnknownEventError, match="newer"):
        decode_event_data("shelter.registered", 2, stored_v0)


def test_log_guard_redacts_personal_fields() -> None:
    entry = redact_personal_data(
        None, "info", {"event": "x", "full_name": "Canary", "case_id": "1"}
    )
    assert entry == {"event": "x", "full_name": REDACTED, "case_id": "1"}

"""The sealed-field format and the envelope's version handling."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from contracts.envelope import Envelope, event_from_bytes, schema_uri, unwrap_event, wrap_event
from contracts.events import ShelterRegistered, UnknownEventError, decode_event_data
from contracts.sealed import (
    SealedValue,
    SealedValueError,
    field_key,
    open_sealed,
    open_with_field_key,
    seal,
)
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


# A fixed vector of the sealed-field format v2 (also in docs/CONFIDENTIALITY.md), so that an
# integrator's implementation and this one can be checked against the same bytes.
VECTOR = {
    "case_key": bytes(range(32)),
    "case_id": "3f2504e0-4f89-51d3-9a0c-0305e82c3301",
    "field": "full_name",
    "field_key": "8d034b8732151e215b31fc16551326f6d18ff9945be76d40f338320ce7d2418f",
    "sealed": {
        "v": 2,
        "alg": "A256GCM",
        "kv": 1,
        "n": "ZGVmZ2hpamtsbW5v",
        "ct": "1XC4IjE9aQEiHeFTt62Wr2Nn8I4hdSmfEbEv",
    },
    "plaintext": "Test Person",
}


def test_the_published_vector_opens_with_the_case_key_and_with_the_field_key() -> None:
    sealed = SealedValue.model_validate(VECTOR["sealed"])
    case_key, case_id, field = VECTOR["case_key"], VECTOR["case_id"], VECTOR["field"]
    assert isinstance(case_key, bytes) and isinstance(case_id, str) and isinstance(field, str)
    key = field_key(case_key, case_id, field, 1)
    assert key.hex() == VECTOR["field_key"]
    assert open_sealed(case_key, case_id, field, sealed) == VECTOR["plaintext"]
    assert open_with_field_key(key, case_id, field, sealed) == VECTOR["plaintext"]
    # The key of one field opens no other field of the same case.
    with pytest.raises(SealedValueError):
        open_with_field_key(field_key(case_key, case_id, "phone", 1), case_id, field, sealed)


def _stored_bytes(dataschema: str | None, type_: str = "shelter.registered", **data: Any) -> bytes:
    envelope = wrap_event(
        _registered(),
        event_id=uuid.uuid4(),
        source="urn:nrm-hub:kg:shelter",
        time=dt.datetime.now(dt.UTC),
        correlation_id=None,
        causation_id=None,
    )
    changed = {"dataschema": dataschema, "type": type_}
    if data:
        changed["data"] = {**envelope.data, **data}
    return envelope.model_copy(update=changed).to_bytes()


@pytest.mark.parametrize(
    "raw",
    [
        _stored_bytes(schema_uri("shelter.registered", 1)),
        _stored_bytes(None),  # no dataschema: version 1
    ],
)
def test_one_pass_reads_a_current_event_as_the_general_path_does(raw: bytes) -> None:
    assert event_from_bytes(raw) == unwrap_event(Envelope.from_bytes(raw)) == _registered()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (_stored_bytes(schema_uri("shelter.registered", 0)), "no upcaster"),  # older
        (_stored_bytes(schema_uri("shelter.registered", 2)), "newer than this code"),
        (_stored_bytes(schema_uri("shelter.discharged", 1)), "does not match"),
        (_stored_bytes(None, "shelter.unheard_of"), "unknown event type"),
        (_stored_bytes(None, region="atlantis"), "region"),
        (b"{not json", "json"),
    ],
)
def test_one_pass_falls_back_to_the_general_path_and_raises_as_it_raises(
    raw: bytes, error: str
) -> None:
    with pytest.raises(ValueError, match=f"(?i){error}"):
        event_from_bytes(raw)
    with pytest.raises(ValueError, match=f"(?i){error}"):
        unwrap_event(Envelope.from_bytes(raw))

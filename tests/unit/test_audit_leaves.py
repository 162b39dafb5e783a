"""What an event or a rejected command becomes in the audit log: actor, role, ids, purpose,
codes and the hash of the exact bytes; never a submitted value. And the replay comparison."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import pytest

from contracts.commands import AcceptReferral, SubmitScreening
from contracts.envelope import Envelope, wrap_event
from contracts.events import (
    AccessGranted,
    AccessRefused,
    Event,
    ReferralAccepted,
    ReferralEscalated,
)
from contracts.operations import CommandRejectionNoted
from contracts.replies import CommandRejection, ErrorCode, FieldError
from contracts.vocabulary import AccessRefusal, AgencyKind, DataPurpose, PersonalField
from services.agencies.registry import load_registry
from services.audit.domain import (
    UNREADABLE,
    LeafError,
    canonical_json,
    entry_for_event,
    entry_for_rejection,
    leaf_bytes,
    parse_leaf,
)
from services.audit.replay import Projections, differences, project
from services.runtime.messaging import parse_command, rejection_notice
from services.runtime.settings import Settings, SettingsError

REGISTRY = load_registry()
NOW = dt.datetime(2026, 11, 23, 9, 30, tzinfo=dt.UTC)
CASE = uuid.UUID("9565a0bc-de1c-5524-9236-732ad33da1f7")
CANARY = "Zarina Canarykyzy"


def stored(event: Event, source: str = "urn:nrm-hub:kg:custody") -> bytes:
    envelope = wrap_event(
        event,
        event_id=uuid.uuid4(),
        source=source,
        time=NOW,
        correlation_id=None,
        causation_id=None,
    )
    return envelope.to_bytes()


def test_an_access_grant_names_agency_role_purpose_fields_and_the_hash() -> None:
    raw = stored(
        AccessGranted(
            case_id=CASE,
            request_id=uuid.uuid4(),
            agency_id="kg-ngo-osh-crisis-centre",
            agency_kind=AgencyKind.NGO,
            purpose=DataPurpose.ASSISTANCE,
            fields=(PersonalField.FULL_NAME, PersonalField.PHONE),
            basis="consent",
            key_id="0123456789abcdef",
        )
    )
    entry = entry_for_event(7, "NRM_EVENTS", 42, raw, REGISTRY)
    assert entry.action == "access.granted" and entry.index == 7
    assert (entry.actor.agency, entry.actor.role) == ("kg-ngo-osh-crisis-centre", "ngo")
    assert entry.purpose == "assistance" and entry.ids["case_id"] == str(CASE)
    assert entry.detail == {"fields": ["full_name", "phone"], "basis": "consent"}
    assert entry.source.sha256 == hashlib.sha256(raw).hexdigest()
    assert (entry.source.stream, entry.source.sequence) == ("NRM_EVENTS", 42)


def test_the_role_comes_from_the_registry_when_the_event_has_none() -> None:
    raw = stored(
        ReferralAccepted(
            referral_id=uuid.uuid4(),
            case_id=CASE,
            provider_id="kg-legal-aid-bishkek",
            accepted_at=NOW,
        ),
        "urn:nrm-hub:kg:referral",
    )
    entry = entry_for_event(0, "NRM_EVENTS", 1, raw, REGISTRY)
    assert (entry.actor.agency, entry.actor.role) == ("kg-legal-aid-bishkek", "service_provider")
    assert set(entry.ids) == {"referral_id", "case_id", "provider_id"}
    escalated = ReferralEscalated(
        referral_id=uuid.uuid4(),
        case_id=CASE,
        provider_id="kg-legal-aid-bishkek",
        overdue_since=NOW,
        escalated_to="kg-coordinating-body",
    )
    hub = entry_for_event(1, "NRM_EVENTS", 2, stored(escalated), REGISTRY)
    assert hub.actor.agency is None  # the hub escalates, no agency acts


def test_an_unreadable_message_is_still_a_leaf_by_its_hash() -> None:
    entry = entry_for_event(0, "NRM_EVENTS", 3, b"{not json", REGISTRY)
    assert entry.action == UNREADABLE
    assert entry.source.sha256 == hashlib.sha256(b"{not json").hexdigest()


def test_leaves_are_canonical_cloudevents_that_parse_back() -> None:
    entry = entry_for_event(0, "NRM_EVENTS", 3, b"x", REGISTRY)
    raw = leaf_bytes(entry, None, "urn:nrm-hub:kg:audit", NOW)
    assert raw == canonical_json(json.loads(raw)) and b" " not in raw
    assert parse_leaf(raw) == entry
    assert json.loads(raw)["type"] == "audit.recorded" and json.loads(raw)["subject"] == "0"
    spaced = json.dumps(json.loads(raw)).encode()
    with pytest.raises(LeafError, match="canonical"):
        parse_leaf(spaced)
    with pytest.raises(ValueError):
        leaf_bytes(entry.model_copy(update={"index": 1}), None, "urn:nrm-hub:kg:audit", NOW)
    with pytest.raises(ValueError):
        canonical_json({"x": 1.5})


def test_a_rejection_notice_keeps_no_submitted_value() -> None:
    body = json.dumps(
        {
            "command_id": str(uuid.uuid4()),
            "agency_id": "kg-ngo-osh-crisis-centre",
            "referral_id": CANARY,
            CANARY: CANARY,
        }
    ).encode()
    with pytest.raises(CommandRejection) as caught:
        parse_command(AcceptReferral, body)
    notice = rejection_notice(AcceptReferral, body, caught.value, REGISTRY)
    assert CANARY not in notice.model_dump_json()
    assert notice.agency_id == "kg-ngo-osh-crisis-centre"
    assert {(e.field, e.code) for e in notice.errors} == {
        ("referral_id", ErrorCode.INVALID_FIELD),
        ("(other)", ErrorCode.INVALID_FIELD),
    }
    # A value in agency_id that is not an agency id (it may be a name) is not kept.
    body = json.dumps({"agency_id": CANARY}).encode()
    rejection = CommandRejection(FieldError(field="", code=ErrorCode.INVALID_JSON, reason="x"))
    assert rejection_notice(SubmitScreening, body, rejection, REGISTRY).agency_id is None
    assert rejection_notice(SubmitScreening, b"\xff", rejection, REGISTRY).command_id is None
    # Nor is a well-formed agency id the registry does not list: the sender chose that text.
    body = json.dumps({"agency_id": "kg-no-such-agency-anna-petrova"}).encode()
    assert rejection_notice(SubmitScreening, body, rejection, REGISTRY).agency_id is None


def test_a_rejection_leaf_names_the_command_codes_and_role() -> None:
    notice = CommandRejectionNoted(
        command="referral.accept",
        command_id=uuid.uuid4(),
        agency_id="kg-prosecutor-general",
        errors=({"field": "agency_id", "code": "not_authorised"},),  # type: ignore[arg-type]
    )
    envelope = Envelope(
        id=str(uuid.uuid4()),
        source="urn:nrm-hub:kg:referral",
        type=CommandRejectionNoted.TYPE,
        time=NOW,
        data=notice.model_dump(mode="json"),
    )
    entry = entry_for_rejection(4, "NRM_REJECTIONS", 2, envelope.to_bytes(), REGISTRY)
    assert entry.action == "command.rejected"
    assert (entry.actor.agency, entry.actor.role) == ("kg-prosecutor-general", "prosecution")
    assert entry.detail == {"command": "referral.accept", "errors": ["agency_id:not_authorised"]}
    assert entry.ids == {"command_id": str(notice.command_id)}


def test_replay_differences_name_the_aggregate() -> None:
    refused = AccessRefused(
        case_id=CASE,
        request_id=uuid.uuid4(),
        agency_id="kg-prosecutor-general",
        agency_kind=AgencyKind.PROSECUTION,
        purpose=DataPurpose.ASSISTANCE,
        fields=(),
        reason=next(iter(AccessRefusal)),
    )
    assert project({("access", str(CASE)): [refused]}) == Projections()
    live = Projections(referrals={"r1": "requested"}, open_referrals={"r1"})
    replayed = Projections(referrals={"r1": "accepted"})
    found = differences(replayed, live)
    assert found == [
        "referral r1: replayed 'accepted', live 'requested'",
        "open referral r1: in the live deadline list, replayed not open",
    ]
    assert differences(live, live) == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NRM_CHECKPOINT_INTERVAL_SECONDS": "0"}, "NRM_CHECKPOINT_INTERVAL_SECONDS"),
        ({"NRM_CHECKPOINT_INTERVAL_SECONDS": "soon"}, "NRM_CHECKPOINT_INTERVAL_SECONDS"),
    ],
)
def test_audit_settings_are_validated_and_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_the_signing_key_defaults_under_the_data_dir() -> None:
    settings = Settings.from_env({"NRM_DATA_DIR": "/srv/nrm"})
    assert settings.audit_signing_key == Path("/srv/nrm/keys/audit-signing")
    moved = Settings.from_env({"NRM_AUDIT_SIGNING_KEY_FILE": "/keys/a"})
    assert moved.audit_signing_key == Path("/keys/a")

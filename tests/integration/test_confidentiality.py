"""The confidentiality SOP on a running hub: personal data is released only to entitled
agencies, sealed to their own keys; consent withdrawal and erasure stop every release; KEK
rotation keeps cases readable; canaries never appear in clear anywhere."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from contracts.commands import (
    Consent,
    DecideScreening,
    EraseCase,
    RecordConsent,
    RegisterShelter,
    RequestAccess,
    RequestIdentificationReview,
    WithdrawConsent,
)
from contracts.events import VictimIdentified
from contracts.public_key_sealing import generate_private_key, read_private_key
from contracts.sealed import SealedValueError, open_with_field_key
from contracts.subjects import AUDIT_STREAM, EVENTS_STREAM
from contracts.vocabulary import (
    AgencyKind,
    DataPurpose,
    ErasureReason,
    PersonalField,
    ReviewGrounds,
    Service,
    ShelterCategory,
)
from services.client import AccessRefusedError, AgencyClient, HubClient
from services.runtime.case_keys import CaseKeys, read_key_ring, retire_old_keys, rotate_key_ring
from services.runtime.connection import flush_confirmed
from services.runtime.keyvalue_jetstream import JetStreamKeyValue
from services.runtime.settings import Settings
from services.runtime.topology import BLIND_INDEX_BUCKET, CASE_KEYS_BUCKET
from tests.integration.hub_reads import (
    CANARIES,
    CANARY_NAME,
    CANARY_PHONE,
    audited_events,
    events,
    screening,
    stream_messages,
    wait_until,
)

pytestmark = pytest.mark.integration
IDENTIFIER = "kg-health-osh"  # identifies in Osh; the shelter is the Osh crisis centre
SHELTER = "kg-ngo-osh-crisis-centre"
POLICE = "kg-mia-osh"
STRANGER = "kg-ngo-bishkek-mens-shelter"
REGISTRAR = "kg-coordinating-body"
F = PersonalField


async def agency(nc: Client, agency_id: str, register: bool = True) -> AgencyClient:
    client = AgencyClient(nc, agency_id, generate_private_key())
    if register:
        reply = await client.register_agency_key(REGISTRAR, agency_id, client.public_key)
        assert reply["status"] == "accepted"
    return client


async def identified_case(
    nc: Client, client: HubClient, consent: Consent | None = None
) -> uuid.UUID:
    """A woman identified in Osh who needs a shelter; the shelter has been referred to."""
    await client.send(
        RegisterShelter(
            command_id=uuid.uuid4(), agency_id=SHELTER, capacity={ShelterCategory.WOMEN: 5}
        )
    )
    reply = await client.send(
        screening(IDENTIFIER, needs=frozenset({Service.SHELTER}), consent=consent)
    )
    assert reply["status"] == "accepted", reply
    case_id = uuid.UUID(reply["aggregate_id"])
    js = nc.jetstream()

    async def referred() -> bool:
        return any(
            e.type == "referral.requested"
            and e.data["case_id"] == str(case_id)
            and e.data["provider_id"] == SHELTER
            for e in await events(js)
        )

    await wait_until(referred)
    return case_id


async def refusal(client: AgencyClient, case_id: uuid.UUID, purpose: DataPurpose) -> str:
    with pytest.raises(AccessRefusedError) as refused:
        await client.open_fields(case_id, purpose)
    assert not any(c in str(refused.value) for c in CANARIES)
    return refused.value.reason


async def test_the_referred_shelter_opens_what_its_referral_needs_and_nothing_more(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    shelter = await agency(nc, SHELTER)
    case_id = await identified_case(nc, client)
    opened = await shelter.open_fields(case_id, DataPurpose.ASSISTANCE)
    # A shelter referral needs name, birth date and phone; no birth date was given.
    assert opened == {F.FULL_NAME: CANARY_NAME, F.PHONE: CANARY_PHONE}
    with pytest.raises(AccessRefusedError) as narrative:
        await shelter.open_fields(case_id, DataPurpose.ASSISTANCE, frozenset({F.NARRATIVE}))
    assert narrative.value.reason == "fields_not_covered"
    identifying = await agency(nc, IDENTIFIER)
    assert F.NARRATIVE in await identifying.open_fields(case_id, DataPurpose.ASSISTANCE)

    decisions = [e for e in await events(nc.jetstream()) if e.type.startswith("access.")]
    assert [(e.type, e.data["agency_id"]) for e in decisions] == [
        ("access.granted", SHELTER),
        ("access.refused", SHELTER),
        ("access.granted", IDENTIFIER),
    ]
    assert decisions[0].data["basis"].startswith("referral:")
    assert decisions[1].data["reason"] == "fields_not_covered"
    assert decisions[0].data["purpose"] == "assistance"


async def test_agencies_that_are_not_entitled_cannot_obtain_the_key(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    case_id = await identified_case(nc, client)
    police = await agency(nc, POLICE)
    assert await refusal(police, case_id, DataPurpose.INVESTIGATION) == "purpose_not_covered"
    assert await refusal(police, case_id, DataPurpose.ASSISTANCE) == "purpose_not_covered"
    stranger = await agency(nc, STRANGER)
    assert await refusal(stranger, case_id, DataPurpose.ASSISTANCE) == "not_a_recipient"
    keyless = await agency(nc, SHELTER, register=False)
    assert await refusal(keyless, case_id, DataPurpose.ASSISTANCE) == "no_registered_key"
    assert await refusal(stranger, uuid.uuid4(), DataPurpose.ASSISTANCE) == "unknown_case"
    refused = [e for e in await events(nc.jetstream()) if e.type == "access.refused"]
    assert len(refused) == 5  # every refusal is recorded (and so audited)
    assert not [e for e in await events(nc.jetstream()) if e.type == "access.granted"]


async def test_only_the_coordinating_body_registers_agency_keys(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    thief = AgencyClient(nc, STRANGER, generate_private_key())
    for registrar in (STRANGER, SHELTER):  # nobody else, not even for itself
        reply = await thief.register_agency_key(registrar, SHELTER, thief.public_key)
        assert reply["status"] == "rejected"
        assert reply["errors"][0] == {
            "field": "agency_id",
            "code": "not_authorised",
            "reason": "only the coordinating body registers agency keys",
        }
    unknown = await client.register_agency_key(REGISTRAR, "kg-nobody", thief.public_key)
    assert unknown["errors"][0]["field"] == "for_agency"
    bad = await client.send_raw(
        "nrm.cmd.agency.register_key",
        json.dumps(
            {
                "command_id": str(uuid.uuid4()),
                "agency_id": REGISTRAR,
                "for_agency": SHELTER,
                "public_key": "A" * 43 + "=" * 2,
            }
        ).encode(),
    )
    assert bad["data"]["errors"][0]["field"] == "public_key"
    assert not [e for e in await events(nc.jetstream()) if e.type == "agency.key_registered"]


async def test_a_release_sealed_to_one_agency_does_not_open_with_another_key(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    case_id = await identified_case(nc, client)
    shelter = await agency(nc, SHELTER)
    # Someone else's client claiming to be the shelter gets a release it cannot open.
    impostor = AgencyClient(nc, SHELTER, generate_private_key())
    with pytest.raises(ValueError, match="sealed to another key"):
        await impostor.open_fields(case_id, DataPurpose.ASSISTANCE)
    assert (await shelter.open_fields(case_id, DataPurpose.ASSISTANCE))[F.FULL_NAME] == CANARY_NAME


async def test_police_read_only_with_consent_for_investigation_and_never_after_withdrawal(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    case_id = await identified_case(nc, client)
    police, shelter = await agency(nc, POLICE), await agency(nc, SHELTER)
    consent = Consent(
        purposes=frozenset({DataPurpose.ASSISTANCE, DataPurpose.INVESTIGATION}),
        recipient_kinds=frozenset({AgencyKind.INTERNAL_AFFAIRS}),
        withheld_fields=frozenset({F.PHONE}),
    )
    recorded = await client.send(
        RecordConsent(
            command_id=uuid.uuid4(),
            agency_id=IDENTIFIER,
            case_id=case_id,
            given_on=dt.date(2026, 11, 21),
            consent=consent,
        )
    )
    assert recorded["status"] == "accepted"
    assert await police.open_fields(case_id, DataPurpose.INVESTIGATION) == {
        F.FULL_NAME: CANARY_NAME,
        F.NARRATIVE: screening().personal_data.narrative,
    }
    assert F.PHONE not in await shelter.open_fields(case_id, DataPurpose.ASSISTANCE)
    earlier = RequestAccess(
        command_id=uuid.uuid4(), agency_id=SHELTER, case_id=case_id, purpose=DataPurpose.ASSISTANCE
    )
    assert (await shelter.send(earlier))["status"] == "released"
    # Only the identifying agency or the coordinating body may change consent.
    meddling = await client.send(
        WithdrawConsent(command_id=uuid.uuid4(), agency_id=STRANGER, case_id=case_id)
    )
    assert meddling["status"] == "rejected" and meddling["errors"][0]["code"] == "not_authorised"
    withdrawn = await client.send(
        WithdrawConsent(command_id=uuid.uuid4(), agency_id=IDENTIFIER, case_id=case_id)
    )
    assert withdrawn["status"] == "accepted"
    assert await refusal(police, case_id, DataPurpose.INVESTIGATION) == "consent_withdrawn"
    assert await refusal(shelter, case_id, DataPurpose.ASSISTANCE) == "consent_withdrawn"
    retried = await shelter.send(earlier)  # the same request again: never granted again
    assert retried["status"] == "denied" and retried["reason"] == "consent_withdrawn"
    # Assistance goes on: the referral is still open.
    assert [r.case_id for r in await shelter.referrals()] == [case_id]


async def test_expired_consent_releases_nothing(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    expired = Consent(expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    case_id = await identified_case(nc, client, consent=expired)
    shelter = await agency(nc, SHELTER)
    assert await refusal(shelter, case_id, DataPurpose.ASSISTANCE) == "consent_expired"


async def test_erasure_shreds_the_case_and_nobody_can_read_it_after(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    case_id = await identified_case(nc, client)
    shelter = await agency(nc, SHELTER)
    assert await shelter.open_fields(case_id, DataPurpose.ASSISTANCE)
    js = nc.jetstream()
    not_allowed = await client.send(
        EraseCase(
            command_id=uuid.uuid4(),
            agency_id=SHELTER,
            case_id=case_id,
            reason=ErasureReason.ERASURE_REQUEST,
        )
    )
    assert not_allowed["status"] == "rejected"
    erased = await client.send(
        EraseCase(
            command_id=uuid.uuid4(),
            agency_id="kg-coordinating-body",
            case_id=case_id,
            reason=ErasureReason.ERASURE_REQUEST,
        )
    )
    assert erased["status"] == "accepted"
    keys = await js.key_value(CASE_KEYS_BUCKET)

    async def shredded() -> bool:
        try:
            entry = await keys.get(str(case_id))
        except KeyNotFoundError:  # purged
            return True
        return not entry.value

    await wait_until(shredded)
    index = await js.key_value(BLIND_INDEX_BUCKET)
    assert not [k for k in await _keys(index) if str(case_id) in k]
    assert await refusal(shelter, case_id, DataPurpose.ASSISTANCE) == "case_erased"
    # The events stay, and every one of them is still audited.
    stored = [e for e in await events(js) if e.subject == str(case_id)]
    assert {"victim.identified", "case.erased"} <= {e.type for e in stored}

    async def audited() -> bool:  # the refused erasure above is a leaf too, not an event
        return await audited_events(js) == len(await events(js))

    await wait_until(audited)


async def _keys(bucket: KeyValue) -> list[str]:
    try:
        return list(await bucket.keys())
    except NoKeysError:
        return []


async def test_a_tampered_or_moved_sealed_value_fails_to_open_with_a_clear_error(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    case_id = await identified_case(nc, client)
    shelter = await agency(nc, SHELTER)
    js = nc.jetstream()
    record = next(
        e for e in await events(js) if e.type == "victim.identified" and e.subject == str(case_id)
    )
    sealed = VictimIdentified.model_validate(record.data).personal_data
    released = await shelter.open_fields(case_id, DataPurpose.ASSISTANCE)
    assert released[F.PHONE] == CANARY_PHONE
    # The phone's key opens neither the name's value moved into the phone field, nor the
    # phone of another case moved into this one, nor a flipped ciphertext.
    other_case = await identified_case(nc, client)
    other = VictimIdentified.model_validate(
        next(
            e
            for e in await events(js)
            if e.type == "victim.identified" and e.subject == str(other_case)
        ).data
    ).personal_data
    phone_key = await _field_key(shelter, case_id, F.PHONE)
    for value, case in ((sealed[F.FULL_NAME], case_id), (other[F.PHONE], case_id)):
        with pytest.raises(SealedValueError) as error:
            open_with_field_key(phone_key, str(case), F.PHONE.value, value)
        assert "does not open" in str(error.value)
        assert not any(c in str(error.value) for c in CANARIES)
    raw = bytearray(base64.b64decode(sealed[F.PHONE].ct))
    raw[0] ^= 0x01  # one bit of the ciphertext
    flipped = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SealedValueError):
        open_with_field_key(
            phone_key,
            str(case_id),
            F.PHONE.value,
            sealed[F.PHONE].model_copy(update={"ct": flipped}),
        )


async def _field_key(client: AgencyClient, case_id: uuid.UUID, field: PersonalField) -> bytes:
    """A field key as the agency holds it after a release (what `open_fields` uses)."""
    from contracts.public_key_sealing import open_sealed_to, release_info
    from contracts.replies import AccessReleased
    from contracts.sealed import b64decode

    request = RequestAccess(
        command_id=uuid.uuid4(),
        agency_id=client.agency_id,
        case_id=case_id,
        purpose=DataPurpose.ASSISTANCE,
        fields=frozenset({field}),
    )
    released = AccessReleased.model_validate(await client.send(request))
    info = release_info(str(case_id), str(request.command_id), client.agency_id)
    keys = json.loads(open_sealed_to(client._private_key, info, released.sealed_field_keys))
    return b64decode(keys["field_keys"][field.value], "key")


async def test_kek_rotation_keeps_every_case_readable(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    first = await identified_case(nc, client)
    shelter = await agency(nc, SHELTER)
    ring_file = hub.key_encryption_key_file
    rotated = rotate_key_ring(ring_file)
    keys = CaseKeys(await JetStreamKeyValue.open(nc, CASE_KEYS_BUCKET), ring_file)
    assert await keys.rewrap_all() == 1
    retire_old_keys(ring_file)
    assert read_key_ring(ring_file).keys.keys() == {rotated.current}
    # A case created after the rotation, by the running identifier, uses the new KEK too.
    second = await identified_case(nc, client)
    bucket = await nc.jetstream().key_value(CASE_KEYS_BUCKET)
    for case_id in (first, second):
        record = json.loads((await bucket.get(str(case_id))).value or b"")
        assert record["kek"] == rotated.current
        assert (await shelter.open_fields(case_id, DataPurpose.ASSISTANCE))[F.FULL_NAME] == (
            CANARY_NAME
        )


async def test_the_same_person_screened_twice_is_flagged_without_revealing_a_name(
    hub: Settings, client: HubClient, nc: Client
) -> None:
    base = screening(IDENTIFIER)
    with_dob = base.personal_data.model_copy(update={"date_of_birth": dt.date(1992, 3, 4)})
    first = await client.send(base.model_copy(update={"personal_data": with_dob, "age": None}))
    respelled = with_dob.model_copy(update={"full_name": "  canarykyzy, ZARINA "})
    again = screening("kg-ngo-osh-crisis-centre")
    second = await client.send(again.model_copy(update={"personal_data": respelled, "age": None}))
    assert first["likely_duplicate_of"] == []
    assert second["likely_duplicate_of"] == [first["aggregate_id"]]
    flagged = [e for e in await events(nc.jetstream()) if e.type == "case.duplicate_suspected"]
    assert [e.subject for e in flagged] == [second["aggregate_id"]]
    index = await nc.jetstream().key_value(BLIND_INDEX_BUCKET)
    for key in await index.keys():
        value = (await index.get(key)).value or b""
        assert not any(c.lower().encode() in (key.encode() + value).lower() for c in CANARIES)


async def test_canaries_never_cross_nats_or_reach_the_store_files_or_logs(
    hub: Settings, client: HubClient, nc: Client, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert hub.nats_url is not None
    seen: list[bytes] = []
    snoop = await nats.connect(hub.nats_url, name="snoop")

    async def record(msg: Msg) -> None:
        seen.append(msg.subject.encode() + json.dumps(msg.headers or {}).encode() + msg.data)

    await snoop.subscribe(">", cb=record)
    await flush_confirmed(snoop)
    case_id = await identified_case(nc, client)
    shelter = await agency(nc, SHELTER)
    assert (await shelter.open_fields(case_id, DataPurpose.ASSISTANCE))[F.FULL_NAME] == (
        CANARY_NAME
    )
    police = await agency(nc, POLICE)
    await refusal(police, case_id, DataPurpose.INVESTIGATION)
    await asyncio.sleep(0.5)  # let the audit and the referral flow finish
    await snoop.drain()
    assert len(seen) > 20
    for canary in CANARIES:
        assert not any(canary.encode() in raw for raw in seen), canary
    for stream in (EVENTS_STREAM, AUDIT_STREAM):
        for msg in await stream_messages(nc.jetstream(), stream):
            assert not any(c.encode() in (msg.data or b"") for c in CANARIES)
    store_files = [p for p in (tmp_path / "nats").rglob("*") if p.is_file()]
    assert store_files
    for path in store_files:
        content = path.read_bytes()
        assert not any(c.encode() in content for c in CANARIES), path
    logs = capfd.readouterr()
    for canary in CANARIES:
        assert canary not in logs.out and canary not in logs.err


async def test_agency_keys_from_the_command_line(
    hub: Settings, client: HubClient, nc: Client, tmp_path: Path
) -> None:
    assert hub.nats_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env |= {"PYTHONPATH": str(Path(__file__).parents[2]), "NRM_NATS_URL": hub.nats_url}
    keys = tmp_path / "agency-keys"

    async def nrm(*args: str) -> subprocess.CompletedProcess[str]:
        # In a thread: the hub's services run in this test's event loop.
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    made = await nrm("agency", "keygen", "--agency", SHELTER, "--out", str(keys))
    assert made.returncode == 0, made.stderr
    private_file, public_file = keys / f"{SHELTER}.key", keys / f"{SHELTER}.pub"
    assert stat.S_IMODE(private_file.stat().st_mode) == 0o600
    again = await nrm("agency", "keygen", "--agency", SHELTER, "--out", str(keys))
    assert again.returncode == 2  # never overwrites an agency key
    registered = await nrm(
        "agency", "register-key", "--agency", SHELTER, "--public-key", str(public_file)
    )
    assert registered.returncode == 0, registered.stderr
    shelter = AgencyClient(nc, SHELTER, read_private_key(private_file))
    case_id = await identified_case(nc, client)
    assert (await shelter.open_fields(case_id, DataPurpose.ASSISTANCE))[F.FULL_NAME] == CANARY_NAME
    refused = await nrm(
        "case", "erase", str(case_id), "--agency", SHELTER, "--reason", "erasure_request"
    )
    assert refused.returncode == 1 and "agency_id" in refused.stderr
    erased = await nrm(
        "case", "erase", str(case_id), "--agency", IDENTIFIER, "--reason", "erasure_request"
    )
    assert erased.returncode == 0, erased.stderr
    assert await refusal(shelter, case_id, DataPurpose.ASSISTANCE) == "case_erased"
    rotated = await nrm("keys", "rotate-kek")
    assert rotated.returncode != 0  # this hub's KEK is not in NRM_DATA_DIR's default place
    env["NRM_KEK_FILE"] = str(hub.key_encryption_key_file)
    rotated = await nrm("keys", "rotate-kek")
    assert rotated.returncode == 0, rotated.stderr
    assert "re-wrapped" in rotated.stdout


async def test_the_case_lifecycle_and_oversight_paths_leak_nothing(
    hub: Settings, nc: Client, client: HubClient, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The whole `nrm demo` (case plan, re-referral, unmet need, transfer, follow-ups,
    closure, reopening, reassignment, worklists, statistics) and a presumed victim decided and
    a non-identification reviewed: no name or phone of theirs in any message, header, subject,
    stored file or log line."""
    from nrm_tools.demo import run_scenario

    assert hub.nats_url is not None
    seen: list[bytes] = []
    snoop = await nats.connect(hub.nats_url, name="snoop")

    async def record(msg: Msg) -> None:
        seen.append(msg.subject.encode() + json.dumps(msg.headers or {}).encode() + msg.data)

    await snoop.subscribe(">", cb=record)
    await flush_confirmed(snoop)
    assert await run_scenario(hub.nats_url, hub) == 0
    presumed = screening(SHELTER, needs=frozenset({Service.SHELTER, Service.LEGAL_AID}))
    reply = await client.send(presumed.model_copy(update={"presumed": True}))
    assert reply["status"] == "accepted", reply
    decide = DecideScreening(
        command_id=uuid.uuid4(),
        agency_id=SHELTER,
        case_id=uuid.UUID(reply["aggregate_id"]),
        criteria=presumed.criteria.model_copy(update={"means": frozenset()}),
    )
    decided = await client.send(decide)
    assert decided["status"] == "accepted", decided
    review = RequestIdentificationReview(
        command_id=uuid.uuid4(),
        agency_id="kg-ngo-osh-legal-clinic",
        case_id=uuid.UUID(reply["aggregate_id"]),
        grounds=ReviewGrounds.INTERVIEW_CONDITIONS,
    )
    asked = await client.send(review)
    assert asked["status"] == "accepted", asked
    await asyncio.sleep(0.5)  # let the audit, feeds and referral flow finish
    await snoop.drain()
    secrets = [*CANARIES, "Demo Person", "000 000 00"]
    assert len(seen) > 200
    for secret in secrets:
        assert not any(secret.encode() in raw for raw in seen), secret
    for path in (p for p in (tmp_path / "nats").rglob("*") if p.is_file()):
        content = path.read_bytes()
        assert not any(s.encode() in content for s in secrets), path
    logs = capfd.readouterr()
    for secret in secrets:
        # The demo prints its own checks (never a name); services log to the same streams.
        assert secret not in logs.out and secret not in logs.err

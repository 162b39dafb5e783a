"""The identifier's command handlers, as registered, on in-memory ports: the event store and
the KV buckets (case keys, blind index, command-id ledger). No nats-server, no broker.

Commands go through `ServiceHost.execute`, what the command subscriber does once the body
parsed (sender check, command-id ledger, handler); the reply and the rejection notice to
NRM_REJECTIONS are the subscriber's and stay with the integration tests. The contract suites
(tests/integration/test_event_store_contract.py, test_key_value_contract.py) hold the
in-memory adapters to the JetStream ones."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from contracts.commands import (
    AcceptCaseTransfer,
    CloseCase,
    Consent,
    DeclineCaseTransfer,
    EraseCase,
    RecordConsent,
    ReopenCase,
    RequestCaseTransfer,
    RevokeReferral,
    ScreeningInterview,
    SubmitScreening,
    WithdrawConsent,
)
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseReopened,
    CaseTransferDeclined,
    CaseTransferred,
    CaseTransferRequested,
    ConsentRecorded,
    ConsentWithdrawn,
    LikelyDuplicateFound,
    VictimIdentified,
    VictimNotIdentified,
)
from contracts.public_key_sealing import (
    generate_private_key,
    intake_info,
    read_private_key,
    seal_to,
)
from contracts.replies import CommandAccepted, CommandRejection, ErrorCode
from contracts.sealed import open_sealed
from contracts.vocabulary import (
    ClosureReason,
    DataPurpose,
    ErasureReason,
    PersonalField,
    ReopenReason,
    RevokeReason,
    Service,
    TransferDeclineReason,
    TransferReason,
)
from services.agencies.registry import load_registry
from services.case.ids import referral_id_for
from services.custody import service as custody
from services.identifier import service as identifier
from services.referral.service import ReferralService
from services.runtime.case_keys import CaseKeys, create_hub_keys
from services.runtime.command_ledger import first_use
from services.runtime.eventstore import StoredEvent
from services.runtime.in_memory import InMemoryEventStore, InMemoryKeyValue
from services.runtime.messaging import Delivery, Runtime, ServiceHost
from services.runtime.service_table import consumer
from services.runtime.settings import Settings
from services.runtime.topology import (
    BLIND_INDEX_BUCKET,
    CASE_KEYS_BUCKET,
    COMMAND_IDS_BUCKET,
    REFERRAL_DEADLINES_BUCKET,
)
from tests.integration.hub_reads import CANARIES, CANARY_NAME, CANARY_PHONE, screening

IDENTIFIER = "kg-health-osh"  # identifies in Osh
OTHER_IDENTIFIER = "kg-ngo-osh-crisis-centre"
PROSECUTOR = "kg-prosecutor-general"  # never identifies
COORDINATING_BODY = "kg-coordinating-body"


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    settings = Settings(data_dir=tmp_path)
    create_hub_keys(settings)  # the KEK ring, the intake and blind-index keys, as `nrm up`
    buckets = (CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET, COMMAND_IDS_BUCKET, REFERRAL_DEADLINES_BUCKET)
    return Runtime(
        settings=settings,
        registry=load_registry(),
        store=InMemoryEventStore(),
        buckets={name: InMemoryKeyValue() for name in buckets},
    )


@pytest.fixture
def host(runtime: Runtime) -> ServiceHost:
    host = ServiceHost("identifier", runtime, "nats://127.0.0.1:1")  # never connected
    identifier.register(host)
    return host


def intake_public_key(runtime: Runtime) -> X25519PublicKey:
    return read_private_key(runtime.settings.intake_private_key_file).public_key()


def sealed(
    interview: ScreeningInterview, to: X25519PublicKey, *, info_for: str | None = None
) -> SubmitScreening:
    """The screening as an agency sends it (`AgencyClient.sealed`): the personal data sealed
    to the hub's intake key, bound to the command id and agency."""
    info = intake_info(info_for or str(interview.command_id), interview.agency_id)
    clear = interview.personal_data.model_dump_json(exclude_none=True).encode()
    facts = interview.model_dump(exclude={"personal_data"})
    return SubmitScreening.model_validate({**facts, "personal_data": seal_to(to, info, clear)})


async def submit(host: ServiceHost, interview: ScreeningInterview) -> CommandAccepted:
    reply = await host.execute(sealed(interview, intake_public_key(host.runtime)))
    assert isinstance(reply, CommandAccepted)
    return reply


async def case_events(runtime: Runtime, case_id: object) -> list[Any]:
    assert runtime.store is not None
    return [e.event for e in (await runtime.store.load("case", str(case_id))).events]


async def rejected(host: ServiceHost, command: Any) -> list[tuple[str, ErrorCode]]:
    with pytest.raises(CommandRejection) as refused:
        await host.execute(command)
    return [(e.field, e.code) for e in refused.value.errors]


async def case_keys(runtime: Runtime) -> CaseKeys:
    bucket = await runtime.bucket(CASE_KEYS_BUCKET)
    return CaseKeys(bucket, runtime.settings.key_encryption_key_file)


def delivery(stored: StoredEvent) -> Delivery:
    """A stored event as a consumer receives it."""
    envelope = stored.envelope
    return Delivery(envelope, stored.event, envelope.to_bytes(), stored.stream_sequence)


async def test_an_identified_screening_is_recorded_with_its_personal_data_sealed(
    host: ServiceHost, runtime: Runtime
) -> None:
    reply = await submit(host, screening(IDENTIFIER))
    assert not reply.duplicate and len(reply.event_ids) == 2
    identified, consent = await case_events(runtime, reply.aggregate_id)
    assert isinstance(identified, VictimIdentified) and isinstance(consent, ConsentRecorded)
    assert identified.agency_id == IDENTIFIER
    assert set(identified.personal_data) == {
        PersonalField.FULL_NAME,
        PersonalField.PHONE,
        PersonalField.NARRATIVE,
    }
    assert runtime.store is not None
    stored = b"".join(e.envelope.to_bytes() for e in await runtime.store.read("nrm.evt.>"))
    assert not any(canary.encode() in stored for canary in CANARIES)
    # Sealed under the case's own data key, kept (wrapped) in the case-keys bucket.
    case_id = str(reply.aggregate_id)
    keys = await case_keys(runtime)
    found = await keys.existing_key(case_id)
    assert found is not None
    version, key = found
    sealed_name = identified.personal_data[PersonalField.FULL_NAME]
    assert open_sealed(key, case_id, PersonalField.FULL_NAME.value, sealed_name) == CANARY_NAME
    sealed_phone = identified.personal_data[PersonalField.PHONE]
    assert open_sealed(key, case_id, PersonalField.PHONE.value, sealed_phone) == CANARY_PHONE
    record = (await (await runtime.bucket(CASE_KEYS_BUCKET)).get(case_id)).value
    assert version == 1 and key not in record and base64.b64encode(key) not in record  # wrapped


async def test_a_screening_without_the_means_criterion_is_recorded_as_not_identified(
    host: ServiceHost, runtime: Runtime
) -> None:
    reply = await submit(host, screening(IDENTIFIER, means=frozenset()))
    decision, _consent = await case_events(runtime, reply.aggregate_id)
    assert isinstance(decision, VictimNotIdentified)
    assert "means" in {unmet.criterion for unmet in decision.unmet_criteria}


async def test_refused_screenings_write_nothing_and_claim_no_command_id(
    host: ServiceHost, runtime: Runtime
) -> None:
    hub_key = intake_public_key(runtime)
    prosecutor = sealed(screening(PROSECUTOR), hub_key)
    assert await rejected(host, prosecutor) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    stranger_key = generate_private_key().public_key()
    not_for_the_hub = sealed(screening(IDENTIFIER), stranger_key)
    assert await rejected(host, not_for_the_hub) == [("personal_data", ErrorCode.INVALID_FIELD)]
    other_command = sealed(screening(IDENTIFIER), hub_key, info_for=str(uuid.uuid4()))
    assert await rejected(host, other_command) == [("personal_data", ErrorCode.INVALID_FIELD)]
    # The sender the connection vouches for must be the body's agency.
    honest = sealed(screening(IDENTIFIER), hub_key)
    with pytest.raises(CommandRejection) as impersonated:
        await host.execute(honest, sender=OTHER_IDENTIFIER)
    assert [e.code for e in impersonated.value.errors] == [ErrorCode.NOT_AUTHORISED]
    assert runtime.store is not None and await runtime.store.read("nrm.evt.>") == ()
    assert await (await runtime.bucket(COMMAND_IDS_BUCKET)).keys() == []
    assert await (await runtime.bucket(CASE_KEYS_BUCKET)).keys() == []


async def test_a_retry_is_a_duplicate_and_a_reused_command_id_with_another_body_a_conflict(
    host: ServiceHost, runtime: Runtime
) -> None:
    interview = screening(IDENTIFIER)
    first = await submit(host, interview)
    again = await submit(host, interview)  # sealed again: other ciphertext, same content
    assert again.duplicate and again.event_ids == first.event_ids
    assert again.aggregate_id == first.aggregate_id

    other_needs = interview.model_copy(update={"needs": frozenset()})
    other_person = interview.model_copy(
        update={"personal_data": interview.personal_data.model_copy(update={"phone": None})}
    )
    hub_key = intake_public_key(runtime)
    for reused in (other_needs, other_person):
        assert await rejected(host, sealed(reused, hub_key)) == [("command_id", ErrorCode.CONFLICT)]
    assert len(await case_events(runtime, first.aggregate_id)) == 2
    ledger = await runtime.bucket(COMMAND_IDS_BUCKET)
    assert await ledger.keys() == [str(interview.command_id)]
    # The fingerprint is keyed: the name is not in the ledger.
    entry = await ledger.get(str(interview.command_id))
    assert CANARY_NAME.encode() not in entry.value


async def test_the_same_person_screened_twice_is_flagged_by_the_blind_index(
    host: ServiceHost, runtime: Runtime
) -> None:
    def with_birth_date(agency: str, name: str) -> ScreeningInterview:
        base = screening(agency)
        personal = base.personal_data.model_copy(
            update={"full_name": name, "date_of_birth": dt.date(1992, 3, 4)}
        )
        return base.model_copy(update={"personal_data": personal, "age": None})

    first = await submit(host, with_birth_date(IDENTIFIER, CANARY_NAME))
    second = await submit(host, with_birth_date(OTHER_IDENTIFIER, "  canarykyzy, ZARINA "))
    assert first.likely_duplicate_of == ()
    assert first.aggregate_id is not None
    assert second.likely_duplicate_of == (uuid.UUID(first.aggregate_id),)
    flagged = (await case_events(runtime, second.aggregate_id))[-1]
    assert isinstance(flagged, LikelyDuplicateFound)
    assert flagged.earlier_case_ids == (uuid.UUID(first.aggregate_id),)
    index_keys = await (await runtime.bucket(BLIND_INDEX_BUCKET)).keys()
    assert len([k for k in index_keys if k.startswith("idx.")]) == 1
    assert sorted(k for k in index_keys if k.startswith("case.")) == sorted(
        f"case.{c}" for c in (first.aggregate_id, second.aggregate_id)
    )


async def test_consent_is_recorded_and_withdrawn_by_the_identifying_agency_only(
    host: ServiceHost, runtime: Runtime
) -> None:
    case_id = (await submit(host, screening(IDENTIFIER))).aggregate_id
    assert case_id is not None
    investigation = Consent(purposes=frozenset({DataPurpose.ASSISTANCE, DataPurpose.INVESTIGATION}))

    def record(agency: str) -> RecordConsent:
        return RecordConsent(
            command_id=uuid.uuid4(),
            agency_id=agency,
            case_id=case_id,
            given_on=dt.date(2026, 11, 21),
            consent=investigation,
        )

    assert await rejected(host, record(OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    unknown_case = record(IDENTIFIER).model_copy(update={"case_id": uuid.uuid4()})
    assert await rejected(host, unknown_case) == [("case_id", ErrorCode.UNKNOWN_ID)]
    await host.execute(record(IDENTIFIER))
    await host.execute(record(COORDINATING_BODY))  # the coordinating body may act on any case
    withdraw = WithdrawConsent(command_id=uuid.uuid4(), agency_id=IDENTIFIER, case_id=case_id)
    await host.execute(withdraw)

    events = await case_events(runtime, case_id)
    assert [type(e) for e in events] == [
        VictimIdentified,
        ConsentRecorded,
        ConsentRecorded,
        ConsentRecorded,
        ConsentWithdrawn,
    ]
    assert DataPurpose.INVESTIGATION in events[2].purposes
    assert events[4].withdrawn_by == IDENTIFIER


async def test_erasure_is_recorded_and_custody_then_shreds_the_key_and_the_index(
    host: ServiceHost, runtime: Runtime
) -> None:
    interview = screening(IDENTIFIER)
    with_dob = interview.personal_data.model_copy(update={"date_of_birth": dt.date(1990, 1, 1)})
    reply = await submit(host, interview.model_copy(update={"personal_data": with_dob}))
    case_id = reply.aggregate_id
    assert case_id is not None
    erase = EraseCase(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        reason=ErasureReason.ERASURE_REQUEST,
    )
    await host.execute(erase)
    erased = (await case_events(runtime, case_id))[-1]
    assert isinstance(erased, CaseErased) and erased.erased_by == IDENTIFIER
    again = erase.model_copy(update={"command_id": uuid.uuid4()})
    assert await rejected(host, again) == [("case_id", ErrorCode.INVALID_STATE)]

    # custody's consumer, on the same ports: its registered handler, called directly.
    custody_host = ServiceHost("custody", runtime, "nats://127.0.0.1:1")
    custody.register(custody_host)
    assert runtime.store is not None
    [stored] = await runtime.store.read("nrm.evt.case.*.case.erased")
    await custody_host.event_handlers["custody-on-erasure"](delivery(stored))
    keys = await case_keys(runtime)
    assert await keys.existing_key(str(case_id)) is None
    assert await (await runtime.bucket(BLIND_INDEX_BUCKET)).keys() == []


# --- case lifecycle: ownership, transfer, closure ----------------------------------------


def transfer(case_id: object, by: str, to: str) -> RequestCaseTransfer:
    return RequestCaseTransfer(
        command_id=uuid.uuid4(),
        agency_id=by,
        case_id=case_id,
        to_agency=to,
        reason=TransferReason.PERSON_RELOCATED,
    )


def close(case_id: object, by: str) -> CloseCase:
    return CloseCase(
        command_id=uuid.uuid4(), agency_id=by, case_id=case_id, reason=ClosureReason.REINTEGRATED
    )


async def identified_case(host: ServiceHost) -> str:
    """A case identified by IDENTIFIER, with no needs: nothing is referred."""
    case_id = (await submit(host, screening(IDENTIFIER, needs=frozenset()))).aggregate_id
    assert case_id is not None
    return case_id


async def test_a_case_is_transferred_then_closed_and_reopened_by_its_new_owner(
    host: ServiceHost, runtime: Runtime
) -> None:
    case_id = await identified_case(host)
    await host.execute(transfer(case_id, IDENTIFIER, OTHER_IDENTIFIER))
    # Until the receiver accepts, the identifying agency owns the case: the receiver may not
    # close it yet.
    assert await rejected(host, close(case_id, OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    accept = AcceptCaseTransfer(
        command_id=uuid.uuid4(), agency_id=OTHER_IDENTIFIER, case_id=case_id
    )
    await host.execute(accept)
    # Now the former owner may not close it, the new one may.
    assert await rejected(host, close(case_id, IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    await host.execute(close(case_id, OTHER_IDENTIFIER))
    reopen = ReopenCase(
        command_id=uuid.uuid4(),
        agency_id=OTHER_IDENTIFIER,
        case_id=case_id,
        reason=ReopenReason.NEW_NEEDS,
    )
    await host.execute(reopen)

    events = (await case_events(runtime, case_id))[2:]  # after identification and consent
    assert [type(e) for e in events] == [
        CaseTransferRequested,
        CaseTransferred,
        CaseClosed,
        CaseReopened,
    ]
    requested, transferred, closed, reopened = events
    assert (requested.from_agency, requested.to_agency) == (IDENTIFIER, OTHER_IDENTIFIER)
    assert (transferred.from_agency, transferred.to_agency) == (IDENTIFIER, OTHER_IDENTIFIER)
    assert (closed.owner, closed.reason) == (OTHER_IDENTIFIER, ClosureReason.REINTEGRATED)
    assert reopened.owner == OTHER_IDENTIFIER
    # Ids and codes only: nothing of the person in any lifecycle event.
    assert runtime.store is not None
    stored = b"".join(e.envelope.to_bytes() for e in await runtime.store.read("nrm.evt.>"))
    lifecycle = [e for e in await runtime.store.read("nrm.evt.case.>") if e.event in events]
    assert len(lifecycle) == 4 and not any(
        canary.encode() in e.envelope.to_bytes() for e in lifecycle for canary in CANARIES
    )
    assert not any(canary.encode() in stored for canary in CANARIES)


async def test_a_declined_transfer_leaves_the_owner_and_allows_another_request(
    host: ServiceHost, runtime: Runtime
) -> None:
    case_id = await identified_case(host)
    await host.execute(transfer(case_id, COORDINATING_BODY, OTHER_IDENTIFIER))
    second = transfer(case_id, IDENTIFIER, "kg-health-bishkek")
    assert await rejected(host, second) == [("case_id", ErrorCode.INVALID_STATE)]
    decline = DeclineCaseTransfer(
        command_id=uuid.uuid4(),
        agency_id=OTHER_IDENTIFIER,
        case_id=case_id,
        reason=TransferDeclineReason.NO_CAPACITY,
    )
    await host.execute(decline)
    await host.execute(close(case_id, IDENTIFIER))  # still the owner
    events = (await case_events(runtime, case_id))[2:]
    assert [type(e) for e in events] == [CaseTransferRequested, CaseTransferDeclined, CaseClosed]
    assert events[0].requested_by == COORDINATING_BODY


async def test_refused_lifecycle_commands_are_typed_and_write_nothing(
    host: ServiceHost, runtime: Runtime
) -> None:
    case_id = await identified_case(host)
    before = await case_events(runtime, case_id)
    assert await rejected(host, transfer(case_id, IDENTIFIER, "kg-not-registered")) == [
        ("to_agency", ErrorCode.UNKNOWN_AGENCY)
    ]
    assert await rejected(host, transfer(case_id, IDENTIFIER, IDENTIFIER)) == [
        ("to_agency", ErrorCode.INVALID_FIELD)
    ]
    assert await rejected(host, transfer(case_id, IDENTIFIER, PROSECUTOR)) == [
        ("to_agency", ErrorCode.INVALID_FIELD)
    ]
    assert await rejected(host, transfer(case_id, "kg-health-bishkek", OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    nothing_pending = AcceptCaseTransfer(
        command_id=uuid.uuid4(), agency_id=OTHER_IDENTIFIER, case_id=case_id
    )
    assert await rejected(host, nothing_pending) == [("case_id", ErrorCode.INVALID_STATE)]
    assert await case_events(runtime, case_id) == before

    await host.execute(transfer(case_id, IDENTIFIER, OTHER_IDENTIFIER))
    pending = await case_events(runtime, case_id)
    for not_the_receiver in ("kg-health-bishkek", IDENTIFIER, COORDINATING_BODY):
        accept = AcceptCaseTransfer(
            command_id=uuid.uuid4(), agency_id=not_the_receiver, case_id=case_id
        )
        assert await rejected(host, accept) == [("agency_id", ErrorCode.NOT_AUTHORISED)]
    assert await case_events(runtime, case_id) == pending
    not_open = ReopenCase(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        reason=ReopenReason.OTHER,
    )
    assert await rejected(host, not_open) == [("case_id", ErrorCode.INVALID_STATE)]
    unknown = close(uuid.uuid4(), IDENTIFIER)
    assert await rejected(host, unknown) == [("case_id", ErrorCode.UNKNOWN_ID)]
    assert await case_events(runtime, case_id) == pending


async def test_a_case_is_not_closed_while_a_referral_of_it_is_active(
    host: ServiceHost, runtime: Runtime
) -> None:
    referral_host = ServiceHost("referral", runtime, "nats://127.0.0.1:1")
    ReferralService(referral_host).register()
    reply = await submit(host, screening(IDENTIFIER, needs=frozenset({Service.MEDICAL})))
    case_id = reply.aggregate_id
    assert case_id is not None and runtime.store is not None
    on_identification = referral_host.event_handlers["referral-on-identification"]
    spec = consumer("referral-on-identification")
    for stored in await runtime.store.read(*spec.filter_subjects):
        await on_identification(delivery(stored))
    referral_id = referral_id_for(case_id, Service.MEDICAL)
    assert await runtime.store.load("referral", str(referral_id))  # requested, so active

    before = await case_events(runtime, case_id)
    assert await rejected(host, close(case_id, IDENTIFIER)) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    assert await case_events(runtime, case_id) == before

    revoke = RevokeReferral(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        referral_id=referral_id,
        reason=RevokeReason.NEED_MET_ELSEWHERE,
    )
    await referral_host.execute(revoke)
    await host.execute(close(case_id, IDENTIFIER))
    assert isinstance((await case_events(runtime, case_id))[-1], CaseClosed)


async def test_a_closed_case_takes_only_reopening_and_erasure(
    host: ServiceHost, runtime: Runtime
) -> None:
    case_id = await identified_case(host)
    await host.execute(close(case_id, IDENTIFIER))
    closed = await case_events(runtime, case_id)
    refused = [
        close(case_id, IDENTIFIER),
        transfer(case_id, IDENTIFIER, OTHER_IDENTIFIER),
        WithdrawConsent(command_id=uuid.uuid4(), agency_id=IDENTIFIER, case_id=case_id),
        RecordConsent(
            command_id=uuid.uuid4(),
            agency_id=IDENTIFIER,
            case_id=case_id,
            given_on=dt.date(2026, 11, 21),
            consent=Consent(),
        ),
    ]
    for command in refused:
        assert await rejected(host, command) == [("case_id", ErrorCode.INVALID_STATE)], command
    assert await case_events(runtime, case_id) == closed
    erase = EraseCase(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        reason=ErasureReason.RETENTION_ENDED,
    )
    await host.execute(erase)
    assert isinstance((await case_events(runtime, case_id))[-1], CaseErased)


async def test_a_retried_lifecycle_command_changes_nothing_and_a_reused_id_conflicts(
    host: ServiceHost, runtime: Runtime
) -> None:
    case_id = await identified_case(host)
    request = transfer(case_id, IDENTIFIER, OTHER_IDENTIFIER)
    _, first = await host.execute(request)
    _, again = await host.execute(request)
    assert again.duplicate and again.event_ids == first.event_ids
    closing = close(case_id, IDENTIFIER)
    _, closed = await host.execute(closing)
    after = await case_events(runtime, case_id)
    # A retry of the request after the case closed is still answered from the record.
    _, late_retry = await host.execute(request)
    assert late_retry.duplicate and late_retry.event_ids == first.event_ids
    _, close_again = await host.execute(closing)
    assert close_again.duplicate and close_again.event_ids == closed.event_ids
    other_reason = closing.model_copy(update={"reason": ClosureReason.LOST_CONTACT})
    assert await rejected(host, other_reason) == [("command_id", ErrorCode.CONFLICT)]
    other_receiver = request.model_copy(update={"to_agency": "kg-health-bishkek"})
    assert await rejected(host, other_receiver) == [("command_id", ErrorCode.CONFLICT)]
    assert await case_events(runtime, case_id) == after


async def test_a_first_screening_reads_no_record_and_its_retry_is_answered_from_it(
    host: ServiceHost, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's first claim of a command id means nothing was written for it yet: the
    intake skips the read a retry needs (and a retry still gets the recorded answer)."""
    assert not first_use()  # outside a command's handler: a caller must read
    assert runtime.store is not None
    store, reads = runtime.store, []
    load = store.load

    async def counted(aggregate: str, aggregate_id: str) -> Any:
        reads.append(aggregate)
        return await load(aggregate, aggregate_id)

    monkeypatch.setattr(store, "load", counted)
    interview = screening(IDENTIFIER)
    first = await submit(host, interview)
    assert reads == [] and not first.duplicate
    again = await submit(host, interview)
    assert reads == ["case"] and again.duplicate and again.event_ids == first.event_ids
    assert not first_use()

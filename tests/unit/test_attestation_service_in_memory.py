"""Attestations through custody's handlers as registered, on in-memory ports (like
test_identifier_service_in_memory.py): who may issue and revoke, the refusals (not
identified, no consent covering `attestation`, erased), retries, revocation on erasure, and
that the credential verifies offline and names nobody."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.attestation import Verdict, status_list_uri, verify
from contracts.commands import (
    CheckAttestation,
    Consent,
    DecideScreening,
    EraseCase,
    IssueAttestation,
    PersonalData,
    RecordConsent,
    RevokeAttestation,
    ScreeningInterview,
    WithdrawConsent,
)
from contracts.events import (
    AttestationIssued,
    AttestationRevoked,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.replies import (
    AttestationCredential,
    AttestationStatus,
    CommandAccepted,
    CommandRejection,
    ErrorCode,
)
from contracts.vocabulary import (
    AttestationCheckResult,
    AttestationRevocationReason,
    DataPurpose,
    ErasureReason,
    PersonalField,
    Region,
    VictimStatus,
)
from services.agencies.registry import load_registry
from services.case.case import fold_case
from services.custody import service as custody
from services.custody.attestation_handlers import signing_key
from services.custody.attestations import (
    STATUS_LIST_ID,
    binds_document,
    decide_issue,
    fold_attestations,
)
from services.identifier import service as identifier
from services.runtime.case_keys import create_hub_keys
from services.runtime.in_memory import InMemoryEventStore, InMemoryKeyValue
from services.runtime.messaging import Runtime, ServiceHost
from services.runtime.settings import Settings
from services.runtime.topology import BLIND_INDEX_BUCKET, CASE_KEYS_BUCKET, COMMAND_IDS_BUCKET
from tests.integration.hub_reads import CANARIES, CANARY_NAME, CANARY_PHONE, screening
from tests.unit.test_identifier_service_in_memory import delivery, rejected, sealed

IDENTIFIER = "kg-health-osh"
OTHER_IDENTIFIER = "kg-ngo-osh-crisis-centre"
COORDINATING_BODY = "kg-coordinating-body"
CANARY_DOCUMENT = "ID 0071 9930"
WITH_ATTESTATION = Consent(purposes=frozenset({DataPurpose.ASSISTANCE, DataPurpose.ATTESTATION}))


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    settings = Settings(data_dir=tmp_path)
    create_hub_keys(settings)
    buckets = (CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET, COMMAND_IDS_BUCKET)
    return Runtime(
        settings=settings,
        registry=load_registry(),
        store=InMemoryEventStore(),
        buckets={name: InMemoryKeyValue() for name in buckets},
    )


@pytest.fixture
def hosts(runtime: Runtime) -> tuple[ServiceHost, ServiceHost]:
    identifier_host = ServiceHost("identifier", runtime, "nats://127.0.0.1:1")
    identifier.register(identifier_host)
    custody_host = ServiceHost("custody", runtime, "nats://127.0.0.1:1")
    custody.register(custody_host)
    return identifier_host, custody_host


def with_document(interview: ScreeningInterview, number: str | None) -> ScreeningInterview:
    data = PersonalData(full_name=CANARY_NAME, phone=CANARY_PHONE, document_number=number)
    return interview.model_copy(update={"personal_data": data})


async def open_case(
    hosts: tuple[ServiceHost, ServiceHost],
    *,
    consent: Consent = WITH_ATTESTATION,
    document: str | None = CANARY_DOCUMENT,
    **kwargs: Any,
) -> uuid.UUID:
    identifier_host = hosts[0]
    interview = with_document(screening(IDENTIFIER, consent=consent, **kwargs), document)
    reply = await identifier_host.execute(sealed(interview, intake_key(identifier_host)))
    assert isinstance(reply, CommandAccepted)
    return uuid.UUID(reply.aggregate_id)


def intake_key(host: ServiceHost) -> Any:
    from contracts.public_key_sealing import read_private_key

    return read_private_key(host.runtime.settings.intake_private_key_file).public_key()


def issue(case_id: uuid.UUID, agency: str = IDENTIFIER, days: int = 30) -> IssueAttestation:
    return IssueAttestation(
        command_id=uuid.uuid4(), agency_id=agency, case_id=case_id, valid_days=days
    )


def revoke(
    attestation_id: uuid.UUID,
    agency: str = IDENTIFIER,
    reason: AttestationRevocationReason = AttestationRevocationReason.NOT_A_TRAFFICKING_CASE,
) -> RevokeAttestation:
    return RevokeAttestation(
        command_id=uuid.uuid4(), agency_id=agency, attestation_id=attestation_id, reason=reason
    )


async def issued(host: ServiceHost, command: IssueAttestation) -> AttestationCredential:
    reply = await host.execute(command)
    assert isinstance(reply, AttestationCredential), reply
    return reply


async def status_list(host: ServiceHost) -> str:
    """The status list as custody answers it on nrm.ctl.attestation.status_list."""
    runtime = host.runtime
    assert runtime.store is not None
    history = await runtime.store.load("attestation", STATUS_LIST_ID)
    listed = fold_attestations(STATUS_LIST_ID, [e.event for e in history.events])
    uri = status_list_uri(runtime.settings.country, STATUS_LIST_ID)
    return listed.status().sign(signing_key(host), uri, runtime.clock())


async def check(host: ServiceHost, credential: str, document: str | None = None) -> Verdict:
    key = signing_key(host).public
    at = dt.datetime.now(dt.UTC)
    return verify(credential, key, await status_list(host), at, document).verdict


async def test_an_identified_victim_with_consent_gets_a_credential_that_verifies_offline(
    hosts: tuple[ServiceHost, ServiceHost], runtime: Runtime
) -> None:
    _, custody_host = hosts
    case_id = await open_case(hosts)
    command = issue(case_id)
    reply = await issued(custody_host, command)
    assert reply.bound and reply.status_index == 0 and not reply.duplicate
    assert await check(custody_host, reply.credential) is Verdict.VALID
    assert await check(custody_host, reply.credential, "id00719930") is Verdict.VALID
    assert await check(custody_host, reply.credential, "ID 0071 9931") is (Verdict.BINDING_MISMATCH)
    # The retry answers the same credential and writes nothing.
    again = await issued(custody_host, command)
    assert again.duplicate and again.credential == reply.credential
    assert again.event_ids == reply.event_ids
    assert runtime.store is not None
    events = [e.event for e in (await runtime.store.load("attestation", STATUS_LIST_ID)).events]
    assert len(events) == 1 and isinstance(events[0], AttestationIssued)
    event = events[0]
    assert event.victim_status is VictimStatus.IDENTIFIED and event.issued_by == IDENTIFIER
    assert event.expires_at - event.issued_at == dt.timedelta(days=30)
    # Nothing about the person: not in the credential, not in any stored event.
    stored = b"".join(e.envelope.to_bytes() for e in await runtime.store.read("nrm.evt.>"))
    for canary in (*CANARIES, CANARY_DOCUMENT, "00719930"):
        assert canary not in reply.credential
        assert canary.encode() not in stored
    assert str(case_id) not in reply.credential
    # The next one takes the next bit; the coordinating body may issue too.
    second = await issued(custody_host, issue(case_id, COORDINATING_BODY))
    assert second.status_index == 1 and second.credential != reply.credential


async def test_who_may_issue_and_what_is_refused(
    hosts: tuple[ServiceHost, ServiceHost], runtime: Runtime
) -> None:
    identifier_host, custody_host = hosts
    case_id = await open_case(hosts)
    assert await rejected(custody_host, issue(case_id, OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    assert await rejected(custody_host, issue(uuid.uuid4())) == [("case_id", ErrorCode.UNKNOWN_ID)]
    not_identified = await open_case(hosts, means=frozenset())
    assert await rejected(custody_host, issue(not_identified)) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    assistance_only = await open_case(hosts, consent=Consent())
    assert await rejected(custody_host, issue(assistance_only)) == [
        ("case_id", ErrorCode.INVALID_STATE)
    ]
    await identifier_host.execute(
        WithdrawConsent(command_id=uuid.uuid4(), agency_id=IDENTIFIER, case_id=case_id)
    )
    assert await rejected(custody_host, issue(case_id)) == [("case_id", ErrorCode.INVALID_STATE)]
    await identifier_host.execute(
        RecordConsent(
            command_id=uuid.uuid4(),
            agency_id=IDENTIFIER,
            case_id=case_id,
            given_on=dt.date(2026, 12, 1),
            consent=WITH_ATTESTATION,
        )
    )
    assert (await issued(custody_host, issue(case_id))).status_index == 0
    with pytest.raises(ValidationError):  # bounded validity: the contract refuses it
        issue(case_id, days=731)
    # Nothing was written by any refusal: one attestation on the list.
    assert runtime.store is not None
    history = await runtime.store.load("attestation", STATUS_LIST_ID)
    assert len(history.events) == 1


async def test_a_case_without_a_document_or_that_withheld_it_is_not_bound(
    hosts: tuple[ServiceHost, ServiceHost],
) -> None:
    _, custody_host = hosts
    no_document = await open_case(hosts, document=None)
    reply = await issued(custody_host, issue(no_document))
    assert not reply.bound and "doc_binding" not in _claims(reply.credential)
    assert await check(custody_host, reply.credential) is Verdict.VALID
    withheld = Consent(
        purposes=WITH_ATTESTATION.purposes,
        withheld_fields=frozenset({PersonalField.DOCUMENT_NUMBER}),
    )
    kept_back = await open_case(hosts, consent=withheld)
    assert not (await issued(custody_host, issue(kept_back))).bound


async def test_revocation_by_the_owner_and_on_erasure(
    hosts: tuple[ServiceHost, ServiceHost], runtime: Runtime
) -> None:
    identifier_host, custody_host = hosts
    case_id = await open_case(hosts)
    first = await issued(custody_host, issue(case_id))
    second = await issued(custody_host, issue(case_id))
    assert await rejected(custody_host, revoke(first.attestation_id, OTHER_IDENTIFIER)) == [
        ("agency_id", ErrorCode.NOT_AUTHORISED)
    ]
    assert await rejected(custody_host, revoke(uuid.uuid4())) == [
        ("attestation_id", ErrorCode.UNKNOWN_ID)
    ]
    command = revoke(first.attestation_id)
    accepted = await custody_host.execute(command)
    assert isinstance(accepted, tuple) and len(accepted[1].event_ids) == 1
    retried = await custody_host.execute(command)
    assert isinstance(retried, tuple) and retried[1].duplicate
    assert await rejected(custody_host, revoke(first.attestation_id)) == [
        ("attestation_id", ErrorCode.INVALID_STATE)
    ]
    assert await check(custody_host, first.credential) is Verdict.REVOKED
    assert await check(custody_host, second.credential) is Verdict.VALID
    # Erasure revokes what is left, once however often the event is delivered.
    erase = EraseCase(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        reason=ErasureReason.ERASURE_REQUEST,
    )
    await identifier_host.execute(erase)
    assert runtime.store is not None
    (erased,) = (await runtime.store.load("case", str(case_id))).caused_by(str(erase.command_id))
    on_erasure = custody_host.event_handlers["custody-on-erasure"]
    await on_erasure(delivery(erased))
    await on_erasure(delivery(erased))
    history = await runtime.store.load("attestation", STATUS_LIST_ID)
    revocations = [e.event for e in history.events if isinstance(e.event, AttestationRevoked)]
    assert [(r.attestation_id, r.reason) for r in revocations] == [
        (first.attestation_id, AttestationRevocationReason.NOT_A_TRAFFICKING_CASE),
        (second.attestation_id, AttestationRevocationReason.CASE_ERASED),
    ]
    assert await check(custody_host, second.credential) is Verdict.REVOKED
    assert await rejected(custody_host, issue(case_id)) == [("case_id", ErrorCode.INVALID_STATE)]


async def test_the_pure_rule_refuses_in_order_and_binds_only_what_it_may(
    hosts: tuple[ServiceHost, ServiceHost], runtime: Runtime
) -> None:
    case_id = await open_case(hosts)
    assert runtime.store is not None
    case = fold_case([e.event for e in (await runtime.store.load("case", str(case_id))).events])
    assert case is not None
    registry = runtime.registry
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    empty = fold_attestations(STATUS_LIST_ID, [])
    event = decide_issue(case, registry.get(IDENTIFIER), issue(case_id), empty, now, "kid")
    assert event.bound and binds_document(case, now) and event.status_index == 0
    with pytest.raises(CommandRejection) as unknown_agency:
        decide_issue(case, None, issue(case_id), empty, now, "kid")
    assert unknown_agency.value.errors[0].code is ErrorCode.UNKNOWN_AGENCY
    later = fold_attestations(STATUS_LIST_ID, [event])
    assert later.next_index == 1 and later.of_case(case_id)[0].issued == event


def _claims(credential: str) -> dict[str, Any]:
    import base64

    part = credential.removesuffix("~").split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def test_an_online_check_is_answered_and_recorded_with_who_asked(
    hosts: tuple[ServiceHost, ServiceHost], runtime: Runtime
) -> None:
    _, custody_host = hosts
    case_id = await open_case(hosts)
    reply = await issued(custody_host, issue(case_id))
    border = "kg-border-batken"  # any registered agency may ask
    command = CheckAttestation(
        command_id=uuid.uuid4(), agency_id=border, attestation_id=reply.attestation_id
    )
    answer = await custody_host.execute(command)
    assert isinstance(answer, AttestationStatus)
    assert answer.result is AttestationCheckResult.VALID and len(answer.event_ids) == 1
    again = await custody_host.execute(command)
    assert isinstance(again, AttestationStatus) and again.duplicate
    assert again.event_ids == answer.event_ids
    await custody_host.execute(revoke(reply.attestation_id))
    later = await custody_host.execute(
        CheckAttestation(
            command_id=uuid.uuid4(), agency_id=border, attestation_id=reply.attestation_id
        )
    )
    assert isinstance(later, AttestationStatus) and later.result is AttestationCheckResult.REVOKED
    unknown = CheckAttestation(
        command_id=uuid.uuid4(), agency_id=border, attestation_id=uuid.uuid4()
    )
    assert await rejected(custody_host, unknown) == [("attestation_id", ErrorCode.UNKNOWN_ID)]
    assert runtime.store is not None
    history = await runtime.store.load("attestation_check", str(reply.attestation_id))
    checks = [e.event for e in history.events]
    assert [(c.checked_by, c.result, c.case_id) for c in checks] == [  # type: ignore[attr-defined]
        (border, AttestationCheckResult.VALID, case_id),
        (border, AttestationCheckResult.REVOKED, case_id),
    ]


async def test_a_kazakh_hubs_attestation_verifies_with_its_key_and_not_the_kyrgyz_one(
    tmp_path: Path, hosts: tuple[ServiceHost, ServiceHost]
) -> None:
    """Each country hub signs with its own key and names itself in `iss`: cross-border, an
    officer verifies with the issuing hub's key file and status list."""
    settings = Settings(data_dir=tmp_path / "kz", country="kz")
    create_hub_keys(settings)
    buckets = (CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET, COMMAND_IDS_BUCKET)
    kz_runtime = Runtime(
        settings=settings,
        registry=load_registry(country="kz"),
        store=InMemoryEventStore(),
        buckets={name: InMemoryKeyValue() for name in buckets},
    )
    kz_identifier = ServiceHost("identifier", kz_runtime, "nats://127.0.0.1:1")
    identifier.register(kz_identifier)
    kz_custody = ServiceHost("custody", kz_runtime, "nats://127.0.0.1:1")
    custody.register(kz_custody)
    police = "kz-police-almaty"
    interview = with_document(screening(police, consent=WITH_ATTESTATION), CANARY_DOCUMENT)
    interview = interview.model_copy(update={"region": Region.KZ_ALMATY_CITY})
    reply = await kz_identifier.execute(sealed(interview, intake_key(kz_identifier)))
    assert isinstance(reply, CommandAccepted)
    credential = (await issued(kz_custody, issue(uuid.UUID(reply.aggregate_id), police))).credential
    claims = _claims(credential)
    assert claims["iss"] == "urn:nrm-hub:kz" and claims["nrm_country"] == "KZ"
    assert await check(kz_custody, credential, CANARY_DOCUMENT) is Verdict.VALID
    kyrgyz_key = signing_key(hosts[1]).public
    at = dt.datetime.now(dt.UTC)
    assert verify(credential, kyrgyz_key, await status_list(hosts[1]), at).verdict is (
        Verdict.WRONG_ISSUER
    )


async def test_a_presumed_victim_is_attested_until_the_decision_and_revoked_if_not_identified(
    hosts: tuple[ServiceHost, ServiceHost], runtime: Runtime
) -> None:
    identifier_host, custody_host = hosts
    interview = with_document(screening(IDENTIFIER, consent=WITH_ATTESTATION), CANARY_DOCUMENT)
    presumed = interview.model_copy(update={"presumed": True})
    reply = await identifier_host.execute(sealed(presumed, intake_key(identifier_host)))
    assert isinstance(reply, CommandAccepted)
    case_id = uuid.UUID(reply.aggregate_id)
    credential = await issued(custody_host, issue(case_id, days=365))
    assert _claims(credential.credential)["victim_status"] == "presumed"
    assert runtime.store is not None
    [record] = [e.event for e in (await runtime.store.load("case", str(case_id))).events[:1]]
    assert isinstance(record, VictimPresumed)
    assert credential.expires_at == record.decision_due  # not the 365 days asked
    assert await check(custody_host, credential.credential) is Verdict.VALID

    decide = DecideScreening(
        command_id=uuid.uuid4(),
        agency_id=IDENTIFIER,
        case_id=case_id,
        criteria=presumed.criteria.model_copy(update={"means": frozenset()}),
    )
    await identifier_host.execute(decide)
    (decided,) = (await runtime.store.load("case", str(case_id))).caused_by(str(decide.command_id))
    assert isinstance(decided.event, VictimNotIdentified)
    on_decision = custody_host.event_handlers["custody-on-decision"]
    await on_decision(delivery(decided))
    await on_decision(delivery(decided))  # redelivered: revoked once
    history = await runtime.store.load("attestation", STATUS_LIST_ID)
    revoked = [e.event for e in history.events if isinstance(e.event, AttestationRevoked)]
    assert [(r.attestation_id, r.reason) for r in revoked] == [
        (credential.attestation_id, AttestationRevocationReason.NOT_A_TRAFFICKING_CASE)
    ]
    assert await check(custody_host, credential.credential) is Verdict.REVOKED

"""Cross-border referral rules (services/referral/crossborder.py), rule by rule, and the
package contracts."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.commands import Consent, RequestCrossBorderReferral
from contracts.crossborder import (
    AnswerPackage,
    AnswerStatus,
    NoticeAppliedPackage,
    NoticeKind,
    NoticePackage,
    ReferralPackage,
    parse_package,
)
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseNoticeFromAbroadApplied,
    CaseReceivedFromAbroad,
    ConsentRecorded,
    ConsentWithdrawn,
    Event,
    ReferralAccepted,
    ReferralCrossBorderAccepted,
    ReferralCrossBorderClosed,
    ReferralCrossBorderCompleted,
    ReferralCrossBorderDeclined,
    ReferralCrossBorderNoticeApplied,
    ReferralCrossBorderNoticeSent,
    ReferralCrossBorderReceived,
    ReferralCrossBorderRequested,
    ReferralDeclined,
    UnmetCriterion,
    VictimIdentified,
    VictimNotIdentified,
)
from contracts.public_key_sealing import generate_private_key, public_key_b64, seal_to
from contracts.sealed import seal
from contracts.vocabulary import (
    AgeBand,
    AgencyKind,
    ClosureReason,
    CountryCode,
    DataPurpose,
    DeclineReason,
    ErasureReason,
    PersonalField,
    Region,
    Sector,
    Service,
    Sex,
    TransferRefusal,
)
from services.agencies.registry import AgencyRegistry, Peer, load_registry
from services.bootstrap import build_service
from services.case.case import fold_case
from services.case.consent import ConsentGap, consent_in_force
from services.identifier.domain import consent_recorded
from services.referral import crossborder as xb
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import free_port
from services.runtime.service_table import SERVICES, consumer, every_durable
from services.runtime.settings import Settings

CASE = uuid.uuid4()
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
F = PersonalField
KEY = bytes(32)
IDENTIFIER = "kg-mia-osh"
PEER_KEY = generate_private_key()


def registry(public_key: str | None = public_key_b64(PEER_KEY.public_key())) -> AgencyRegistry:
    """The packaged kg registry with Uzbekistan's key exchanged (Kazakhstan's not)."""
    base = load_registry()
    peers = tuple(
        Peer.model_validate({**p.model_dump(), "public_key": public_key})
        if p.country == "uz"
        else p
        for p in base.peers
    )
    return base.model_copy(update={"peers": peers})


def identified(fields: tuple[PersonalField, ...] = tuple(F)) -> VictimIdentified:
    citizenship: CountryCode = "UZ"
    return VictimIdentified(
        case_id=CASE,
        agency_id=IDENTIFIER,
        agency_kind=AgencyKind.INTERNAL_AFFAIRS,
        sector=Sector.GOVERNMENT,
        region=Region.OSH_CITY,
        interviewed_on=dt.date(2026, 11, 20),
        sex=Sex.MALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        citizenship=citizenship,
        country_of_exploitation="KG",
        forms_of_exploitation=(),
        vulnerabilities=(),
        personal_data={f: seal(KEY, str(CASE), f.value, 1, "x") for f in fields},
        purposes=(),
        needs=(Service.REPATRIATION,),
        consent=Consent(),
    )


def consent(**changes: object) -> Event:
    values: dict[str, object] = {
        "purposes": ["assistance", "repatriation"],
        "recipient_countries": ["UZ"],
        **changes,
    }
    return consent_recorded(
        CASE, uuid.uuid4(), IDENTIFIER, dt.date(2026, 11, 20), Consent.model_validate(values)
    )


def command(**changes: object) -> RequestCrossBorderReferral:
    values: dict[str, object] = {
        "command_id": uuid.uuid4(),
        "agency_id": IDENTIFIER,
        "case_id": CASE,
        "destination": "UZ",
        "purpose": "repatriation",
        "service": "repatriation",
        **changes,
    }
    return RequestCrossBorderReferral.model_validate(values)


def decide(
    events: list[Event],
    cmd: RequestCrossBorderReferral | None = None,
    reg: AgencyRegistry | None = None,
) -> xb.Transfer | TransferRefusal:
    reg = reg or registry()
    cmd = cmd or command()
    requester = reg.get(cmd.agency_id)
    assert requester is not None
    return xb.decide_transfer(fold_case(events), requester, reg, cmd, NOW)


def test_a_consented_transfer_sends_only_the_minimal_dataset() -> None:
    decision = decide([identified(), consent()])
    assert isinstance(decision, xb.Transfer)
    assert decision.fields == (F.DATE_OF_BIRTH, F.DOCUMENT_NUMBER, F.FULL_NAME)
    assert decision.peer.country == "uz"


def test_withheld_and_absent_fields_never_go() -> None:
    events = [
        identified((F.FULL_NAME, F.DOCUMENT_NUMBER, F.PHONE)),
        consent(withheld_fields=["document_number"]),
    ]
    decision = decide(events)
    assert isinstance(decision, xb.Transfer)
    assert decision.fields == (F.FULL_NAME,)


@pytest.mark.parametrize(
    ("events", "cmd", "reason"),
    [
        ([], None, TransferRefusal.UNKNOWN_CASE),
        (
            [
                identified(),
                consent(),
                CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason="erasure_request"),
            ],
            None,
            TransferRefusal.CASE_ERASED,
        ),
        (
            [identified(), consent()],
            command(agency_id="kg-ngo-osh-crisis-centre"),
            TransferRefusal.NOT_AUTHORISED,
        ),
        (
            [identified(), consent(recipient_countries=["KZ"])],
            command(destination="KZ"),
            TransferRefusal.NOT_ALLOW_LISTED,
        ),
        ([identified(), consent()], command(destination="TJ"), TransferRefusal.NOT_ALLOW_LISTED),
        (
            [identified(), consent(purposes=["statistics"])],
            command(purpose="statistics"),
            TransferRefusal.PURPOSE_NOT_ALLOWED,
        ),
        ([identified()], None, TransferRefusal.NO_CONSENT),
        (
            [identified(), consent(), ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)],
            None,
            TransferRefusal.CONSENT_WITHDRAWN,
        ),
        (
            [identified(), consent(expires_at=NOW.isoformat())],
            None,
            TransferRefusal.CONSENT_EXPIRED,
        ),
        (
            [identified(), consent(purposes=["assistance"])],
            None,
            TransferRefusal.PURPOSE_NOT_COVERED,
        ),
        (
            [identified(), consent(recipient_countries=[])],
            None,
            TransferRefusal.COUNTRY_NOT_COVERED,
        ),
    ],
)
def test_each_rule_refuses_with_its_reason(
    events: list[Event], cmd: RequestCrossBorderReferral | None, reason: TransferRefusal
) -> None:
    assert decide(events, cmd) is reason


def test_a_case_that_did_not_identify_is_not_sent() -> None:
    data = identified().model_dump(exclude={"purposes", "needs", "consent"})
    record = VictimNotIdentified(
        **data, unmet_criteria=(UnmetCriterion(criterion="act", reason="none"),)
    )
    assert decide([record, consent()]) is TransferRefusal.NOT_IDENTIFIED


def test_the_coordinating_body_may_refer_another_agencys_case() -> None:
    assert isinstance(
        decide([identified(), consent()], command(agency_id="kg-coordinating-body")), xb.Transfer
    )


def package(transfer: xb.Transfer, cmd: RequestCrossBorderReferral) -> ReferralPackage:
    sealed = seal_to(PEER_KEY.public_key(), b"info", b"{}")
    return xb.referral_package(transfer, cmd, "kg", uuid.uuid4(), uuid.uuid4(), sealed, NOW)


def test_the_package_carries_the_profile_and_only_the_consented_purposes() -> None:
    cmd = command()
    transfer = decide(
        [identified(), consent(purposes=["assistance", "repatriation", "investigation"])], cmd
    )
    assert isinstance(transfer, xb.Transfer)
    pkg = package(transfer, cmd)
    assert (pkg.origin, pkg.destination, pkg.authority_id) == ("KG", "UZ", "uz-coordinating-body")
    assert pkg.consent_purposes == (DataPurpose.ASSISTANCE, DataPurpose.REPATRIATION)
    assert pkg.profile.citizenship == "UZ"
    assert parse_package(pkg.model_dump_json().encode()) == pkg


def test_answers_follow_the_referral_in_order_and_only_from_its_destination() -> None:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    requested = xb.requested_event(cmd, package(transfer, cmd))
    referral = xb.fold([requested])

    def answer(
        status: AnswerStatus, origin: str = "UZ", reason: DeclineReason | None = None
    ) -> AnswerPackage:
        return AnswerPackage(
            package_id=uuid.uuid4(),
            origin=origin,
            destination="KG",
            referral_id=requested.referral_id,
            sent_at=NOW,
            status=status,
            reason=reason,
        )

    assert xb.decide_answer(referral, answer(AnswerStatus.RECEIVED, origin="KZ")) == []
    assert xb.decide_answer(referral, answer(AnswerStatus.COMPLETED)) == []
    received = xb.decide_answer(referral, answer(AnswerStatus.RECEIVED))
    assert [type(e) for e in received] == [ReferralCrossBorderReceived]
    referral = xb.fold([requested, *received])
    accepted = xb.decide_answer(referral, answer(AnswerStatus.ACCEPTED))
    assert [type(e) for e in accepted] == [ReferralCrossBorderAccepted]
    referral = xb.fold([requested, *received, *accepted])
    assert (
        xb.decide_answer(referral, answer(AnswerStatus.DECLINED, reason=DeclineReason.NO_CAPACITY))
        == []
    )
    assert [type(e) for e in xb.decide_answer(referral, answer(AnswerStatus.COMPLETED))] == [
        ReferralCrossBorderCompleted
    ]
    declined = xb.decide_answer(
        xb.fold([requested]), answer(AnswerStatus.DECLINED, reason=DeclineReason.NO_CAPACITY)
    )
    assert isinstance(declined[0], ReferralCrossBorderDeclined)
    assert declined[0].reason is DeclineReason.NO_CAPACITY


def test_a_declined_answer_needs_a_reason() -> None:
    with pytest.raises(ValidationError, match="reason"):
        AnswerPackage(
            package_id=uuid.uuid4(),
            origin="UZ",
            destination="KG",
            referral_id=uuid.uuid4(),
            sent_at=NOW,
            status=AnswerStatus.DECLINED,
        )


def test_reception_refers_to_a_local_provider_and_answers_back() -> None:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    pkg = package(transfer, cmd)
    uz = load_registry(country="uz")
    local_case, local_referral = uuid.uuid4(), uuid.uuid4()
    case_events, requested = xb.plan_reception(
        pkg, uz, local_case, uuid.uuid4(), local_referral, {}, NOW, dt.timedelta(hours=1)
    )
    received = case_events[0]
    assert isinstance(received, CaseReceivedFromAbroad)
    assert (received.agency_id, received.origin, received.origin_referral_id) == (
        "uz-coordinating-body",
        "KG",
        pkg.referral_id,
    )
    provider = uz.get(requested.provider_id)
    assert provider is not None and Service.REPATRIATION in provider.services
    assert requested.shared_fields == pkg.fields
    answer = xb.answer_for(received, received, uuid.uuid4(), "uz", NOW)
    assert isinstance(answer, AnswerPackage) and (answer.status, answer.destination) == (
        AnswerStatus.RECEIVED,
        "KG",
    )
    ids = {"referral_id": local_referral, "case_id": local_case, "provider_id": provider.id}
    accepted = xb.answer_for(
        ReferralAccepted(**ids, accepted_at=NOW), received, uuid.uuid4(), "uz", NOW
    )
    assert accepted is not None and accepted.referral_id == pkg.referral_id
    declined = xb.answer_for(
        ReferralDeclined(**ids, reason=DeclineReason.NO_CAPACITY), received, uuid.uuid4(), "uz", NOW
    )
    assert isinstance(declined, AnswerPackage) and declined.reason is DeclineReason.NO_CAPACITY


def test_registries_of_the_three_countries_name_each_other() -> None:
    for country, peers in (("kg", {"kz", "uz"}), ("kz", {"kg"}), ("uz", {"kg"})):
        reg = load_registry(country=country)
        assert reg.country == country
        assert {p.country for p in reg.peers} == peers
        for peer in reg.peers:
            assert load_registry(country=peer.country).get(peer.authority_id) is not None


def test_a_hub_refuses_to_run_on_another_countrys_registry(tmp_path: Path) -> None:
    from services.bootstrap import build_service
    from services.runtime.settings import SettingsError

    kz = Settings(country="kz", data_dir=tmp_path)
    host, _ = build_service("shelter", "nats://127.0.0.1:1", kz)
    assert host.runtime.registry.country == "kz"
    wrong = tmp_path / "kg.json"
    wrong.write_text(load_registry().model_dump_json())
    mixed = Settings(country="uz", data_dir=tmp_path, agency_registry=wrong)
    with pytest.raises(SettingsError, match="'kg' registry, not 'uz'"):
        build_service("shelter", "nats://127.0.0.1:1", mixed)


def test_a_peer_key_must_be_an_x25519_key() -> None:
    with pytest.raises(ValidationError, match="public_key"):
        Peer(
            country="uz",
            authority_id="uz-coordinating-body",
            public_key="bm90IGEga2V5",
            purposes={},
        )


def test_the_deployed_nats_configs_are_the_generated_ones(tmp_path: Path) -> None:
    from services.runtime.crossborder_nats import write_deployment

    deployed = Path(__file__).parents[2] / "deploy" / "nats" / "crossborder"
    for path in write_deployment(tmp_path):
        assert (deployed / path.name).read_text() == path.read_text(), path.name


def test_each_pair_account_lets_through_only_the_pairs_subjects() -> None:
    from services.runtime.crossborder_nats import crossborder_config

    text = crossborder_config("kg", ["kz", "uz"], {"kz": "a", "uz": "b"}, "h", "127.0.0.1:1")
    shared = re.findall(r"\{ stream: [^\n]*?\"([^\"]+)\"", text)
    assert len(shared) == 8  # per pair: HUB export + import, pair account import + export
    assert set(shared) == {"nrm.xb.kg.kz.>", "nrm.xb.kz.kg.>", "nrm.xb.kg.uz.>", "nrm.xb.uz.kg.>"}
    assert "nrm.evt" not in text and "$JS" not in text and "$KV" not in text
    assert text.count("jetstream: enabled") == 1  # only HUB; the pair accounts have none


def test_the_destination_applies_only_what_its_own_allow_list_agreed() -> None:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    pkg = package(transfer, cmd)
    uz = load_registry(country="uz")
    assert xb.reception_problem(pkg, uz) is None
    more = pkg.model_copy(update={"fields": (*pkg.fields, F.NARRATIVE)})
    assert xb.reception_problem(more, uz) == "fields_beyond_minimal_dataset"
    other = pkg.model_copy(update={"purpose": DataPurpose.STATISTICS})
    assert xb.reception_problem(other, uz) == "purpose_not_allowed"
    stranger = pkg.model_copy(update={"origin": "TJ"})
    assert xb.reception_problem(stranger, uz) == "origin_not_a_peer"


def test_every_event_consumer_pulls_no_more_than_it_may_hold(tmp_path: Path) -> None:
    """A pull for more messages than max_ack_pending gets the ones the server may hand out
    and then waits out the fetch timeout for the rest: xb-outbox (max_ack_pending 1) once
    drained one event per second. Checked on the consumers the services really register."""
    settings = Settings(data_dir=tmp_path)
    create_hub_keys(settings)  # the services read their keys when built
    pulls: dict[str, int] = {}
    for name in SERVICES:
        never_dialled = f"nats://127.0.0.1:{free_port()}"  # building does not connect
        host, _ = build_service(name, never_dialled, settings)
        for pull in host.pulls:
            assert pull.max_deliver == settings.max_deliver  # dead-lettered where it must be
            pulls[pull.durable] = pull.batch
    assert pulls["xb-outbox"] == 1
    # Every service consumer on the event stream, taken by the one loop (audit runs its own).
    assert set(pulls) == {d.durable for d in every_durable() if d.service != "audit"}
    for durable, batch in pulls.items():
        limit = consumer(durable).config(settings).max_ack_pending
        assert limit is not None and batch <= limit, durable


# --- after a transfer: notices of consent changes and erasure; closure -----------------------

LATER = NOW + dt.timedelta(days=1)


def requested() -> ReferralCrossBorderRequested:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    return xb.requested_event(cmd, package(transfer, cmd))


def notice(referral: list[Event], change: Event, at: dt.datetime = LATER) -> list[Event]:
    assert isinstance(change, ConsentWithdrawn | ConsentRecorded | CaseErased)
    return xb.decide_notice(xb.fold(referral), change, uuid.uuid4(), "kg", at)


def sent(events: list[Event]) -> ReferralCrossBorderNoticeSent:
    assert len(events) == 1 and isinstance(events[0], ReferralCrossBorderNoticeSent)
    return events[0]


def test_a_withdrawal_is_a_notice_with_ids_and_codes_only() -> None:
    request = requested()
    event = sent(notice([request], ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)))
    assert event.notice is NoticeKind.WITHDRAWN and event.destination == "UZ"
    pkg = event.package
    assert (pkg.origin, pkg.destination, pkg.referral_id) == ("KG", "UZ", request.referral_id)
    assert set(pkg.model_dump()) == {
        "v",
        "kind",
        "package_id",
        "origin",
        "destination",
        "referral_id",
        "sent_at",
        "notice",
        "consent_purposes",
        "consent_expires_at",
    }
    assert str(CASE) not in pkg.model_dump_json()  # the origin's case id never leaves
    assert parse_package(pkg.model_dump_json().encode()) == pkg


def test_an_erasure_is_a_notice_even_after_a_withdrawal() -> None:
    request = requested()
    withdrawn = notice([request], ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER))
    erased = CaseErased(case_id=CASE, erased_by=IDENTIFIER, reason=ErasureReason.ERASURE_REQUEST)
    assert sent(notice([request, *withdrawn], erased)).notice is NoticeKind.ERASED
    # After a withdrawal, a new consent is not sent (a widening takes a new referral).
    assert notice([request, *withdrawn], consent(purposes=["repatriation"])) == []


@pytest.mark.parametrize(
    ("changes", "purposes"),
    [
        ({"purposes": ["repatriation"]}, (DataPurpose.REPATRIATION,)),
        ({"recipient_countries": ["KZ"]}, ()),  # the destination no longer named
        ({"purposes": ["investigation"]}, ()),
    ],
)
def test_a_narrowing_says_what_the_consent_covers_there_now(
    changes: dict[str, object], purposes: tuple[DataPurpose, ...]
) -> None:
    event = sent(notice([requested()], consent(**changes)))
    assert (event.notice, event.consent_purposes) == (NoticeKind.NARROWED, purposes)


def test_the_same_or_a_wider_consent_sends_nothing() -> None:
    request = requested()
    assert notice([request], consent()) == []
    wider = consent(purposes=["assistance", "repatriation", "investigation"])
    assert notice([request], wider) == []


def test_an_earlier_expiry_narrows_and_an_expired_consent_is_an_expiry() -> None:
    request = requested()
    soon = (NOW + dt.timedelta(days=30)).isoformat()
    event = sent(notice([request], consent(expires_at=soon)))
    assert event.notice is NoticeKind.NARROWED
    assert event.consent_expires_at == NOW + dt.timedelta(days=30)
    assert event.consent_purposes == request.package.consent_purposes
    # Narrowed once: the same consent again is not a second notice.
    assert notice([request, event], consent(expires_at=soon)) == []
    past = consent(expires_at=NOW.isoformat())
    assert sent(notice([request], past, at=LATER)).notice is NoticeKind.EXPIRED


def test_no_request_no_notice_and_a_notice_is_recorded_once() -> None:
    withdrawal = ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER)
    assert xb.decide_notice(None, withdrawal, uuid.uuid4(), "kg", NOW) == []
    request = requested()
    package_id = uuid.uuid4()
    first = xb.decide_notice(xb.fold([request]), withdrawal, package_id, "kg", NOW)
    again = xb.decide_notice(xb.fold([request, *first]), withdrawal, package_id, "kg", NOW)
    assert len(first) == 1 and again == []


def test_a_notice_package_carries_a_consent_only_when_narrowed() -> None:
    with pytest.raises(ValidationError, match="narrowed"):
        NoticePackage(
            package_id=uuid.uuid4(),
            origin="KG",
            destination="UZ",
            referral_id=uuid.uuid4(),
            sent_at=NOW,
            notice=NoticeKind.WITHDRAWN,
            consent_purposes=(DataPurpose.ASSISTANCE,),
        )


# --- the destination ---------------------------------------------------------------------


def received_case() -> tuple[list[Event], CaseReceivedFromAbroad]:
    cmd = command()
    transfer = decide([identified(), consent()], cmd)
    assert isinstance(transfer, xb.Transfer)
    pkg = package(transfer, cmd)
    uz = load_registry(country="uz")
    events, _ = xb.plan_reception(
        pkg, uz, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), {}, NOW, dt.timedelta(hours=1)
    )
    received = events[0]
    assert isinstance(received, CaseReceivedFromAbroad)
    return events, received


def notice_for(
    received: CaseReceivedFromAbroad, kind: NoticeKind, **consent: object
) -> NoticePackage:
    return NoticePackage.model_validate(
        {
            "package_id": uuid.uuid4(),
            "origin": received.origin,
            "destination": "UZ",
            "referral_id": received.origin_referral_id,
            "sent_at": LATER,
            "notice": kind,
            **consent,
        }
    )


def apply(events: list[Event], received: CaseReceivedFromAbroad, pkg: NoticePackage) -> list[Event]:
    return xb.apply_notice(fold_case(events), received, pkg, "uz-coordinating-body", uuid.uuid4())


@pytest.mark.parametrize("kind", [NoticeKind.WITHDRAWN, NoticeKind.EXPIRED])
def test_a_withdrawal_or_expiry_withdraws_the_local_consent(kind: NoticeKind) -> None:
    events, received = received_case()
    applied = apply(events, received, notice_for(received, kind))
    assert [type(e) for e in applied] == [ConsentWithdrawn, CaseNoticeFromAbroadApplied]
    case = fold_case([*events, *applied])
    assert case is not None and consent_in_force(case, LATER) is ConsentGap.CONSENT_WITHDRAWN
    # Already withdrawn: only acknowledged.
    again = apply([*events, *applied], received, notice_for(received, kind))
    assert [type(e) for e in again] == [CaseNoticeFromAbroadApplied]


def test_an_erasure_erases_the_received_case() -> None:
    events, received = received_case()
    applied = apply(events, received, notice_for(received, NoticeKind.ERASED))
    assert [type(e) for e in applied] == [CaseErased, CaseNoticeFromAbroadApplied]
    erased = applied[0]
    assert isinstance(erased, CaseErased) and erased.reason is ErasureReason.ERASED_AT_ORIGIN
    assert erased.case_id == received.case_id


def test_a_narrowing_never_widens_the_local_consent() -> None:
    events, received = received_case()
    soon = LATER + dt.timedelta(days=5)
    pkg = notice_for(
        received,
        NoticeKind.NARROWED,
        consent_purposes=["repatriation", "investigation"],
        consent_expires_at=soon,
    )
    applied = apply(events, received, pkg)
    narrowed = applied[0]
    assert isinstance(narrowed, ConsentRecorded)
    assert narrowed.purposes == (DataPurpose.REPATRIATION,)  # investigation never came
    assert narrowed.expires_at == soon
    empty = notice_for(received, NoticeKind.NARROWED, consent_purposes=[])
    assert next(type(e) for e in apply(events, received, empty)) is ConsentWithdrawn


def test_a_notice_from_another_country_is_not_applied() -> None:
    events, received = received_case()
    pkg = notice_for(received, NoticeKind.WITHDRAWN).model_copy(update={"origin": "KZ"})
    assert apply(events, received, pkg) == []


def test_the_acknowledgement_and_the_closure_go_back_as_codes() -> None:
    events, received = received_case()
    pkg = notice_for(received, NoticeKind.WITHDRAWN)
    applied = apply(events, received, pkg)[-1]
    answer = xb.answer_for(applied, received, uuid.uuid4(), "uz", LATER)
    assert isinstance(answer, NoticeAppliedPackage)
    assert (answer.notice_id, answer.referral_id, answer.destination) == (
        pkg.package_id,
        received.origin_referral_id,
        "KG",
    )
    closed = CaseClosed(
        case_id=received.case_id,
        owner="uz-coordinating-body",
        closed_by="uz-coordinating-body",
        reason=ClosureReason.REINTEGRATED,
    )
    closure = xb.answer_for(closed, received, uuid.uuid4(), "uz", LATER)
    assert isinstance(closure, AnswerPackage) and closure.status is AnswerStatus.CLOSED


def test_the_origin_records_the_acknowledgement_once_and_the_closure() -> None:
    request = requested()
    notices = notice([request], ConsentWithdrawn(case_id=CASE, withdrawn_by=IDENTIFIER))
    notice_id = sent(notices).package_id
    ack = NoticeAppliedPackage(
        package_id=uuid.uuid4(),
        origin="UZ",
        destination="KG",
        referral_id=request.referral_id,
        sent_at=LATER,
        notice_id=notice_id,
        notice=NoticeKind.WITHDRAWN,
    )
    recorded = xb.decide_notice_applied(xb.fold([request, *notices]), ack)
    assert [type(e) for e in recorded] == [ReferralCrossBorderNoticeApplied]
    assert xb.decide_notice_applied(xb.fold([request, *notices, *recorded]), ack) == []
    assert xb.decide_notice_applied(xb.fold([request]), ack) == []  # no such notice sent
    wrong = ack.model_copy(update={"origin": "KZ"})
    assert xb.decide_notice_applied(xb.fold([request, *notices]), wrong) == []
    closure = AnswerPackage(
        package_id=uuid.uuid4(),
        origin="UZ",
        destination="KG",
        referral_id=request.referral_id,
        sent_at=LATER,
        status=AnswerStatus.CLOSED,
    )
    closed = xb.decide_answer(xb.fold([request]), closure)
    assert [type(e) for e in closed] == [ReferralCrossBorderClosed]
    assert xb.decide_answer(xb.fold([request, *closed]), closure) == []

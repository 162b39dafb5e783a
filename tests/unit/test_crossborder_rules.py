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
from contracts.crossborder import AnswerPackage, AnswerStatus, ReferralPackage, parse_package
from contracts.events import (
    CaseErased,
    ConsentWithdrawn,
    Event,
    ReferralAccepted,
    ReferralCrossBorderAccepted,
    ReferralCrossBorderCompleted,
    ReferralCrossBorderDeclined,
    ReferralCrossBorderReceived,
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
    CountryCode,
    DataPurpose,
    DeclineReason,
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
    assert isinstance(received, xb.CaseReceivedFromAbroad)
    assert (received.agency_id, received.origin, received.origin_referral_id) == (
        "uz-coordinating-body",
        "KG",
        pkg.referral_id,
    )
    provider = uz.get(requested.provider_id)
    assert provider is not None and Service.REPATRIATION in provider.services
    assert requested.shared_fields == pkg.fields
    answer = xb.answer_for(received, received, uuid.uuid4(), "uz", NOW)
    assert answer is not None and (answer.status, answer.destination) == (
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
    assert declined is not None and declined.reason is DeclineReason.NO_CAPACITY


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
        assert batch <= consumer(durable).config(settings).max_ack_pending, durable

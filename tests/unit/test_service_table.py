"""The service table (runtime/service_table.py) against the code it describes: every command owned
once and sendable by some agency role, every service built by a register function that
registers exactly what its entry says, the keys it declares, and the permissions derived."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest

from contracts.commands import (
    ALL_COMMANDS,
    Command,
    RequestAccess,
    RequestCrossBorderReferral,
    SubmitScreening,
)
from contracts.subjects import agency_command_subject, command_subject
from services import bootstrap
from services.agencies.registry import load_registry
from services.bootstrap import REGISTER, RegistrationDrift, build_service
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import free_port
from services.runtime.messaging import SIDE_WORK_DELAY_SECONDS, side_work_wait
from services.runtime.permissions import (
    agency_user,
    hub_auth,
    render_accounts,
    render_leaf_users,
    service_user,
)
from services.runtime.service_table import (
    SERVICES,
    TABLE,
    Entry,
    Key,
    Sender,
    consumer_configs,
    entry,
    every_durable,
    may_send,
)
from services.runtime.settings import Settings
from services.runtime.topology import BUCKETS, ConsumerSpec

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = load_registry(None)
URL = f"nats://127.0.0.1:{free_port()}"  # never dialled: building a service does not connect


def owners(command: type[Command], table: tuple[Entry, ...]) -> list[str]:
    return [e.name for e in table if command in e.commands]


def test_every_command_has_exactly_one_owner() -> None:
    assert {c: owners(c, TABLE) for c in ALL_COMMANDS if len(owners(c, TABLE)) != 1} == {}
    assert {c for e in TABLE for c in e.commands} == set(ALL_COMMANDS)  # nothing off the wire


def test_a_command_without_an_owner_is_caught() -> None:
    """The check above, on a table that lost a command: it would fail."""
    identifier = entry("identifier")
    lost = dataclasses.replace(identifier, commands={SubmitScreening: (Sender.IDENTIFYING,)})
    table = tuple(lost if e is identifier else e for e in TABLE)
    unowned = [c.NAME for c in ALL_COMMANDS if not owners(c, table)]
    assert unowned == [
        "consent.record",
        "consent.withdraw",
        "case.erase",
        "case.transfer_request",
        "case.transfer_accept",
        "case.transfer_decline",
        "case.close",
        "case.reopen",
        "followup.schedule",
        "followup.record",
        "screening.decide",
        "identification.review_request",
        "identification.review_assign",
        "identification.review_decide",
        "proceeding.file_complaint",
        "proceeding.open_investigation",
        "proceeding.bring_charges",
        "proceeding.record_decision",
        "proceeding.record_participation",
    ]


def test_every_command_some_agency_role_may_send() -> None:
    assert [c.NAME for e in TABLE for c, roles in e.commands.items() if not roles] == []
    # ... and some agency of the packaged registry holds one of those roles.
    sendable = {c for agency in REGISTRY.agencies for c in may_send(agency, REGISTRY)}
    assert [c.NAME for c in ALL_COMMANDS if c not in sendable] == []


def test_agency_permissions_are_the_commands_its_roles_allow() -> None:
    coordinating = REGISTRY.get(REGISTRY.coordinating_body)
    assert coordinating is not None
    clinic = next(a for a in REGISTRY.agencies if a.services and not a.may_identify)
    for agency in (coordinating, clinic):
        publish = agency_user(agency.id, REGISTRY).permissions.publish
        granted = {c.NAME for c in ALL_COMMANDS if agency_command_subject(c, agency.id) in publish}
        assert granted == {c.NAME for c in may_send(agency, REGISTRY)}
        assert "access.request" in granted  # any agency may ask (custody decides)
    assert "agency.register_key" in {c.NAME for c in may_send(coordinating, REGISTRY)}
    assert {"referral.accept"} <= {c.NAME for c in may_send(clinic, REGISTRY)}
    assert "screening.submit" not in {c.NAME for c in may_send(clinic, REGISTRY)}
    # A provider follows up a case it took on (the identifier checks the referral).
    assert {"followup.schedule", "followup.record"} <= {c.NAME for c in may_send(clinic, REGISTRY)}
    assert {"followup.schedule", "followup.record"} <= {
        c.NAME for c in may_send(coordinating, REGISTRY)
    }
    assert entry("custody").commands[RequestAccess] == (Sender.ANY,)


def test_criminal_proceedings_follow_the_agency_kinds() -> None:
    """Law enforcement opens investigations and brings charges, the prosecution records the
    court's decision, a representative of the victim files complaints; nobody else."""

    def names(agency_id: str) -> set[str]:
        agency = REGISTRY.get(agency_id)
        assert agency is not None
        return {c.NAME for c in may_send(agency, REGISTRY) if c.NAME.startswith("proceeding.")}

    everything = {
        "proceeding.file_complaint",
        "proceeding.open_investigation",
        "proceeding.bring_charges",
        "proceeding.record_participation",
        "proceeding.record_decision",
    }
    assert names("kg-prosecutor-general") == everything
    assert names("kg-mia-osh") == everything - {"proceeding.record_decision"}
    assert names("kg-ngo-osh-legal-clinic") == {"proceeding.file_complaint"}
    assert names("kg-ombudsperson") == {"proceeding.file_complaint"}
    assert names("kg-coordinating-body") == set()
    assert names("kg-health-osh") == set()


def test_every_service_has_a_register_function_and_every_register_a_service() -> None:
    assert len(set(SERVICES)) == len(SERVICES)
    assert set(REGISTER) == set(SERVICES)


def test_durables_are_unique_and_buckets_exist() -> None:
    settings = Settings()
    durables = [config.durable_name for _, config in consumer_configs(settings, ["kz", "uz"])]
    assert len(durables) == len(set(durables))
    assert {d.durable for d in every_durable()} <= set(durables)
    assert {"xb-relay-kz", "xb-relay-uz", "xb-ingress"} <= set(durables)
    assert {b for e in TABLE for b in e.buckets} <= set(BUCKETS)


@pytest.fixture
def keyed(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path)
    create_hub_keys(settings)  # the services read their keys when built
    return settings


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_registers_exactly_its_table_entry(name: str, keyed: Settings) -> None:
    host, _ = build_service(name, URL, keyed)  # check_registered raises on any drift
    declared = entry(name)
    assert set(host.command_handlers) == set(declared.commands)
    events = {c.durable for c in declared.consumers if isinstance(c, ConsumerSpec)}
    assert {pull.durable for pull in host.pulls} == events


def test_a_command_or_consumer_outside_the_table_fails_at_start(
    keyed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    referral = entry("referral")
    fewer_commands = dataclasses.replace(
        referral,
        commands={c: s for c, s in referral.commands.items() if c.NAME != "referral.revoke"},
    )
    monkeypatch.setattr(bootstrap, "entry", lambda name: fewer_commands)
    with pytest.raises(RegistrationDrift, match=r"commands \['referral.revoke'\] registered but"):
        build_service("referral", URL, keyed)
    fewer_consumers = dataclasses.replace(
        referral, consumers=tuple(c for c in referral.consumers if c.durable != "xb-outbox")
    )
    monkeypatch.setattr(bootstrap, "entry", lambda name: fewer_consumers)
    with pytest.raises(RegistrationDrift, match=r"consumers \['xb-outbox'\] registered but"):
        build_service("referral", URL, keyed)
    more = dataclasses.replace(
        entry("shelter"), commands={**entry("shelter").commands, SubmitScreening: (Sender.ANY,)}
    )
    monkeypatch.setattr(bootstrap, "entry", lambda name: more)
    with pytest.raises(RegistrationDrift, match=r"\['screening.submit'\] in the table but not"):
        build_service("shelter", URL, keyed)


@pytest.mark.parametrize("key", list(Key))
def test_a_service_needs_no_key_it_does_not_declare(key: Key, keyed: Settings) -> None:
    """Without one key file, every service that does not declare it still starts, and one
    that declares it and reads it at start fails naming the setting."""
    key.path(keyed).unlink()
    failed = []
    for e in TABLE:
        try:
            build_service(e.name, URL, keyed)
        except Exception as exc:
            assert key in e.keys, f"{e.name} needs {key.value} but its entry does not say so"
            assert key.value in str(exc), (e.name, str(exc))
            failed.append(e.name)
    assert failed, f"no service reads {key.value} at start: is it still needed?"


def test_command_routing_is_the_table() -> None:
    """Each command subject is subscribable by its owner's NATS user, and by no other."""
    for e in TABLE:
        subscribe = set(service_user(e.name, "kg").permissions.subscribe)
        for command in ALL_COMMANDS:
            mine = command in e.commands
            assert (command_subject(command) in subscribe) is mine, (e.name, command.NAME)
            assert (f"{command_subject(command)}.*" in subscribe) is mine, (e.name, command.NAME)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_table_and_the_plumbing_import_no_service() -> None:
    packages = {p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()}
    services = {f"services.{p}" for p in packages - {"runtime", "agencies", "case"}}
    assert "services.identifier" in services
    modules = list((ROOT / "services" / "runtime").glob("*.py"))  # the table's included
    assert ROOT / "services" / "runtime" / "service_table.py" in modules
    crossing = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in imports_of(path)
        if any(name == s or name.startswith(f"{s}.") for s in services)
    )
    assert crossing == []


def test_dev_certificates_are_made_for_every_service() -> None:
    """deploy/scripts/dev-certs.py runs without the package installed, so it keeps its own
    list of roles: it must be the table's."""
    script = ROOT / "deploy" / "scripts" / "dev-certs.py"
    listed = next(
        ast.literal_eval(node.value)
        for node in ast.parse(script.read_text()).body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SERVICES" for t in node.targets)
    )
    assert set(listed) == set(SERVICES)


@pytest.mark.parametrize("country", ["kg", "kz", "uz"])
def test_cross_border_permissions_follow_the_table_in_every_country(country: str) -> None:
    """Each agency of each country may send `referral.cross_border` exactly when a role the
    table names for it admits it (an agency that may identify, the coordinating body), only
    in its own name; no agency may touch a link subject; only the referral service runs the
    link; each partner's leaf lands in its own pair account, which carries only that pair's
    subjects (events, audit, commands and keys never cross)."""
    registry = load_registry(country=country)
    roles = entry("referral").commands[RequestCrossBorderReferral]
    assert set(roles) == {Sender.IDENTIFYING, Sender.COORDINATING_BODY}
    auth = hub_auth(registry)
    senders = set()
    for agency in registry.agencies:
        publish = auth.user(agency.id).permissions.publish
        granted = [s for s in publish if s.startswith(command_subject(RequestCrossBorderReferral))]
        if any(role.admits(agency, registry) for role in roles):
            senders.add(agency.id)
            assert granted == [agency_command_subject(RequestCrossBorderReferral, agency.id)]
        else:
            assert granted == [], agency.id
        subscribe = auth.user(agency.id).permissions.subscribe
        assert not [s for s in (*publish, *subscribe) if s.startswith("nrm.xb")], agency.id
    assert registry.coordinating_body in senders
    assert senders == {a.id for a in registry.agencies if a.may_identify} | {
        registry.coordinating_body
    }
    link_users = [
        u.name for u in auth.users if any(s.startswith("nrm.xb") for s in u.permissions.publish)
    ]
    assert link_users == ["referral"]
    peers = [p.country for p in registry.peers]
    assert auth.peers == tuple(peers) and peers
    accounts = render_accounts(auth)
    leaf_users = render_leaf_users(auth)
    for peer in peers:
        pair = "XB_" + peer.upper()
        assert f'"leaf-{peer}@{country}.nrm-hub", account: {pair} }}' in leaf_users
        block = accounts[accounts.index(f"  {pair} {{") :].split("\n  }")[0]
        subjects = set(re.findall(r'"([^"]+)"', block))
        assert subjects == {f"nrm.xb.{peer}.{country}.>", f"nrm.xb.{country}.{peer}.>"}
        assert "users" not in block and "jetstream" not in block


def test_side_work_is_the_feed_the_projections_and_the_outbox(keyed: Settings) -> None:
    """Only work that never leads to a case's next step waits after an event is stored
    (messaging.SIDE_WORK_DELAY_SECONDS): never a decision."""
    side = {c.durable for e in TABLE for c in e.consumers if getattr(c, "side_work", False)}
    assert side == {"referral-feed", "xb-outbox", "identifier-followups"}
    for name in SERVICES:
        host, _ = build_service(name, URL, keyed)
        for pull in host.pulls:
            wanted = SIDE_WORK_DELAY_SECONDS if pull.durable in side else 0.0
            assert pull.after_stored == wanted, pull.durable


def test_side_work_waits_only_for_fresh_events_and_never_longer_than_its_delay() -> None:
    at = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)
    stored = at.timestamp()
    assert side_work_wait(at, stored + 0.004, 0.010) == pytest.approx(0.006, abs=1e-6)
    assert side_work_wait(at, stored + 0.011, 0.010) == 0.0
    assert side_work_wait(at, stored + 5.0, 0.010) == 0.0  # a backlog is not held back
    assert side_work_wait(at, stored - 3.0, 0.010) == 0.010  # the server's clock ahead
    assert side_work_wait(None, stored, 0.010) == 0.0

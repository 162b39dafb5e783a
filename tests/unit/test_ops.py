"""Ops pieces that need no NATS: who a referral event is addressed to, the permission table,
the health endpoints' routing, the TLS settings."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from contracts.events import ReferralEscalated, ReferralRequested, ReferralRevoked
from contracts.vocabulary import AgeBand, Region, RevokeReason, Service, Sex
from services.agencies.registry import load_registry
from services.referral.feed import addressees
from services.runtime.connection import connect_options
from services.runtime.health import answer
from services.runtime.permissions import hub_auth, inbox_prefix, user_name
from services.runtime.settings import Settings, SettingsError

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
REF, CASE = uuid.uuid4(), uuid.uuid4()


def _requested(provider: str) -> ReferralRequested:
    return ReferralRequested(
        referral_id=REF,
        case_id=CASE,
        service=Service.LEGAL_AID,
        provider_id=provider,
        referrer_id="kg-mia-osh",
        region=Region.OSH_CITY,
        sex=Sex.FEMALE,
        age_band=AgeBand.FROM_25_TO_34,
        is_child=False,
        placement_category=None,
        shared_fields=(),
        requested_at=NOW,
        respond_by=NOW + dt.timedelta(days=3),
    )


def test_a_referral_event_goes_to_its_provider_and_its_referrer() -> None:
    assert addressees(_requested("kg-ngo-osh-legal-clinic"), []) == (
        "kg-ngo-osh-legal-clinic",
        "kg-mia-osh",
    )
    # A referrer that refers to itself gets one copy.
    assert addressees(_requested("kg-mia-osh"), []) == ("kg-mia-osh",)


def test_a_revocation_names_no_provider_so_the_request_does() -> None:
    revoked = ReferralRevoked(
        referral_id=REF, case_id=CASE, revoked_by="kg-mia-osh", reason=RevokeReason.PERSON_WITHDREW
    )
    history = [_requested("kg-ngo-osh-legal-clinic")]
    assert addressees(revoked, history) == ("kg-ngo-osh-legal-clinic", "kg-mia-osh")
    assert addressees(revoked, []) == ()


def test_an_escalation_goes_to_the_provider_and_the_coordinating_body() -> None:
    escalated = ReferralEscalated(
        referral_id=REF,
        case_id=CASE,
        provider_id="kg-ngo-osh-legal-clinic",
        overdue_since=NOW,
        escalated_to="kg-coordinating-body",
    )
    assert addressees(escalated, []) == ("kg-ngo-osh-legal-clinic", "kg-coordinating-body")
    history = [_requested("kg-ngo-osh-legal-clinic")]
    assert addressees(escalated, history) == (
        "kg-ngo-osh-legal-clinic",
        "kg-mia-osh",
        "kg-coordinating-body",
    )


def test_every_agency_and_service_has_its_own_user_and_inbox() -> None:
    registry = load_registry()
    auth = hub_auth(registry)
    names = [u.role for u in auth.users]
    assert len(names) == len(set(names))
    for agency in registry.agencies:
        user = auth.user(agency.id)
        assert user.permissions.subscribe == (f"{inbox_prefix(agency.id)}.>",)
        assert not user.permissions.allow_responses
        assert all(
            not s.startswith(("nrm.evt", "nrm.audit", "$KV")) for s in user.permissions.publish
        )
    assert user_name("identifier", "kg") == "identifier@kg.nrm-hub"


def test_only_identifying_agencies_may_submit_screenings() -> None:
    registry = load_registry()
    auth = hub_auth(registry)
    for agency in registry.agencies:
        publish = auth.user(agency.id).permissions.publish
        allowed = f"nrm.cmd.screening.submit.{agency.id}" in publish
        assert allowed == agency.may_identify, agency.id
        assert "nrm.cmd.screening.submit" not in publish, agency.id  # the open subject


def test_an_agency_may_publish_commands_only_on_its_own_subjects() -> None:
    registry = load_registry()
    auth = hub_auth(registry)
    for agency in registry.agencies:
        commands = [s for s in auth.user(agency.id).permissions.publish if s.startswith("nrm.cmd.")]
        assert commands, agency.id
        for subject in commands:
            assert subject.endswith(f".{agency.id}"), (agency.id, subject)
            assert "*" not in subject and ">" not in subject, (agency.id, subject)


def test_health_routes() -> None:
    assert answer("/livez", []).startswith(b"HTTP/1.1 200")
    assert answer("/readyz", []).startswith(b"HTTP/1.1 503")  # nothing running is not ready
    metrics = answer("/metrics", [])
    assert metrics.startswith(b"HTTP/1.1 200") and b"nrm_commands_total" in metrics
    assert answer("/admin", []).startswith(b"HTTP/1.1 404")
    body = answer("/readyz", []).split(b"\r\n\r\n", 1)[1]
    assert json.loads(body) == {}


def test_unsecured_connections_are_unchanged() -> None:
    settings = Settings()
    assert connect_options(settings, "identifier") == {"name": "nrm-identifier"}


def test_a_client_certificate_brings_tls_and_the_roles_inbox(tmp_path: Path) -> None:
    from tests.integration.secured_hub import make_certs

    certs = make_certs(tmp_path, ["nats-1"])
    settings = Settings(
        nats_tls_ca=certs / "ca.pem",
        nats_tls_cert=certs / "users" / "referral.pem",
        nats_tls_key=certs / "users" / "referral-key.pem",
    )
    options = connect_options(settings, "referral")
    assert options["inbox_prefix"] == "_INBOX.referral"
    assert options["tls"] is not None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NRM_NATS_TLS_CERT": "/etc/hostname"}, "NRM_NATS_TLS_KEY"),  # cert without key
        ({"NRM_NATS_TLS_KEY": "/etc/hostname"}, "NRM_NATS_TLS_KEY"),
        ({"NRM_NATS_TLS_CA": "/nonexistent.pem"}, "NRM_NATS_TLS_CA"),
        ({"NRM_HEALTH_PORT": "70000"}, "NRM_HEALTH_PORT"),
        ({"NRM_HEALTH_HOST": "example.org"}, "NRM_HEALTH_HOST"),
    ],
)
def test_bad_ops_settings_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)

"""The permission matrix, proven on real nats-servers running deploy/nats/hub.conf (3-node
cluster, TLS with client certificates from deploy/scripts/dev-certs.py, accounts.conf).

Expectations are written out here by hand, not derived from services/runtime/permissions.py:
the test states what must be true and the generated config has to satisfy it. A denied
operation is one the server answers with a permissions violation (checked after a flush,
which the server answers only after any -ERR for what came before it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError

from contracts.commands import RegisterShelter
from contracts.public_key_sealing import generate_private_key
from contracts.subjects import AUDIT_STREAM, DLQ_STREAM, EVENTS_STREAM, FEEDS_STREAM
from contracts.vocabulary import DataPurpose, PersonalField
from services.bootstrap import bootstrap, start_service
from services.client import AgencyClient, HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.connection import connect_options, flush_confirmed
from services.runtime.embedded import free_port
from services.runtime.keyvalue_jetstream import JetStreamKeyValue
from services.runtime.settings import nats_servers
from services.runtime.status import hub_status
from tests.integration.hub_reads import CANARY_NAME, screening, wait_until
from tests.integration.secured_hub import (
    NATS_CONFIGS,
    SecuredCluster,
    SecuredNode,
    leaf_env,
    node_env,
)

pytestmark = pytest.mark.integration

CRISIS = "kg-ngo-osh-crisis-centre"  # NGO: identifies, runs a shelter, provides services
CLINIC = "kg-ngo-osh-legal-clinic"  # NGO: provides legal aid, does not identify
COORD = "kg-coordinating-body"
PROSECUTOR = "kg-prosecutor-general"  # prosecution: does not identify
POLICE = "kg-mia-osh"  # internal affairs: identifies
SERVICES = ("identifier", "referral", "shelter", "audit", "custody")
AGENCIES = (CRISIS, CLINIC, COORD)
EVERY_ROLE = (*SERVICES, "admin", "auditor", *AGENCIES)
CASE, REF = str(uuid.uuid4()), str(uuid.uuid4())
SENTINEL = "nrm.probe.sentinel"  # no role may publish here


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredCluster]:
    hub = SecuredCluster(tmp_path_factory.mktemp("secured"))
    hub.start()
    try:
        admin = hub.settings("admin", hub.base)
        asyncio.run(bootstrap(hub.url, admin))
        asyncio.run(bootstrap(hub.url, admin, within=10))  # re-running needs no update rights
        yield hub
    finally:
        hub.stop()


class Probe:
    """One role's connection, recording the server's permission violations."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    def _violated(self, kind: str, subject: str) -> bool:
        # nats-py lower-cases the server's -ERR text.
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()
        return any(wanted in e.lower() for e in self.errors)

    async def _settled(self) -> None:
        """Wait until the server has reported everything before this point. The server may
        send a violation after the PONG of a later flush, so flush() is not enough; errors
        themselves arrive in order, so a sentinel violation marks the point."""
        await self.nc.publish(SENTINEL, b"")
        await flush_confirmed(self.nc)
        for _ in range(500):
            if self._violated("publish", SENTINEL):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the server never reported the sentinel: {self.errors}")

    async def can_publish(self, subject: str) -> bool:
        self.errors.clear()
        await self.nc.publish(subject, b"{}")
        await self._settled()
        return not self._violated("publish", subject)

    async def can_subscribe(self, subject: str) -> bool:
        self.errors.clear()
        sub = await self.nc.subscribe(subject)
        await self._settled()
        allowed = not self._violated("subscription", subject)
        await sub.unsubscribe()
        return allowed


@contextlib.asynccontextmanager
async def connected(cluster: SecuredCluster, role: str, **extra: object) -> AsyncIterator[Probe]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    options = connect_options(cluster.settings(role, cluster.base), role)
    options.update(extra)
    nc = await nats.connect(
        nats_servers(cluster.url), error_cb=on_error, allow_reconnect=False, **options
    )
    try:
        yield Probe(nc, errors)
    finally:
        await nc.close()


def evt(aggregate: str, event_type: str) -> str:
    return f"nrm.evt.{aggregate}.{uuid.uuid4()}.{event_type}"


def feed_create(name: str, owner: str) -> str:
    return f"$JS.API.CONSUMER.CREATE.{FEEDS_STREAM}.{name}.nrm.feed.{owner}.>"


# Denied to every role, whatever else it may do.
DENIED_TO_ALL_PUBLISH = (
    f"$JS.API.STREAM.DELETE.{AUDIT_STREAM}",
    f"$JS.API.STREAM.PURGE.{AUDIT_STREAM}",
    f"$JS.API.STREAM.MSG.DELETE.{AUDIT_STREAM}",
    f"$JS.API.STREAM.DELETE.{EVENTS_STREAM}",
    f"$JS.API.STREAM.PURGE.{EVENTS_STREAM}",
    f"$JS.API.STREAM.PURGE.{FEEDS_STREAM}",
)
DENIED_TO_ALL_SUBSCRIBE = ("_INBOX.>", "_INBOX.*.>", ">")


def anothers_inbox(role: str) -> str:
    return f"_INBOX.{CLINIC if role == CRISIS else CRISIS}.>"


# role -> (publish allowed, publish denied, subscribe allowed, subscribe denied)
MATRIX: dict[str, tuple[tuple[str, ...], ...]] = {
    "identifier": (
        (
            evt("case", "victim.identified"),
            "$KV.nrm-case-keys.k1",
            f"$JS.API.STREAM.INFO.{EVENTS_STREAM}",
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}",  # loads: batched direct get
            # follow-ups: the projection of those due, and its durable
            "$KV.nrm-followups-due.k1",
            evt("proceeding", "proceeding.complaint_filed"),  # criminal proceedings
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.identifier-followups",
        ),
        (
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.load-x.nrm.evt.case.{CASE}.>",
            f"$JS.API.CONSUMER.DELETE.{EVENTS_STREAM}.load-x",
            evt("shelter", "shelter.registered"),
            evt("referral", "referral.requested"),
            "nrm.audit.victim.identified",
            f"nrm.feed.{CRISIS}.{REF}.referral.requested",
            "$KV.nrm-referral-deadlines.k1",
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.audit-all",
            f"$JS.API.CONSUMER.DELETE.{EVENTS_STREAM}.audit-all",
            f"$JS.API.STREAM.CREATE.{EVENTS_STREAM}",
            "nrm.cmd.shelter.register",
        ),
        (
            "nrm.cmd.screening.submit",
            "nrm.cmd.screening.submit.*",
            "nrm.cmd.case.close.*",
            "nrm.cmd.case.transfer_accept.*",
            "nrm.cmd.proceeding.file_complaint.*",
            "nrm.cmd.proceeding.record_decision",
            "_INBOX.identifier.x",
        ),
        (
            "nrm.cmd.shelter.register",
            "nrm.cmd.shelter.register.*",
            "nrm.evt.>",
            "nrm.feed.>",
            "nrm.ctl.dlq.redrive.audit-all",
        ),
    ),
    "referral": (
        (
            evt("referral", "referral.requested"),
            f"nrm.feed.{CRISIS}.{REF}.referral.requested",
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.referral-on-identification",
            "$KV.nrm-referral-deadlines.k1",
            "nrm.dlq.referral-feed",
            # A durable it took over: its dead letters are re-driven, none recorded.
            "nrm.dlq.referral-deadlines.resolved",
            # Cross-border: egress re-seals a case's minimal fields, ingress records the case
            # received from abroad (docs/CROSSBORDER.md), and the link's own subjects.
            evt("case", "case.received_from_abroad"),
            "$KV.nrm-case-keys.k1",
            "nrm.xb.outbox.kz.x",
        ),
        (
            evt("shelter", "shelter.admitted"),
            evt("access", "access.granted"),
            "nrm.audit.x",
            "$KV.nrm-blind-index.k1",
            "nrm.dlq.audit-all",
            "nrm.dlq.referral-deadlines",
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.referral-deadlines",
            # Moving a durable (bootstrap's takeover) is the operators' alone: a service
            # that could would skip events, the audit writer's included.
            f"$JS.API.CONSUMER.RESET.{EVENTS_STREAM}.referral-feed",
            f"$JS.API.CONSUMER.RESET.{EVENTS_STREAM}.audit-all",
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.shelter-on-referral",
            "$KV.nrm-followups-due.k1",  # the identifier's
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.identifier-followups",
            evt("proceeding", "proceeding.investigation_opened"),  # the identifier's
        ),
        (
            "nrm.cmd.referral.accept",
            "nrm.cmd.referral.accept.*",
            "nrm.ctl.dlq.redrive.referral-feed",
            "nrm.ctl.dlq.redrive.referral-deadlines",
        ),
        ("nrm.cmd.screening.submit", "nrm.cmd.screening.submit.*", "nrm.evt.>"),
    ),
    "shelter": (
        (
            evt("shelter", "shelter.admitted"),
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}",
        ),
        (
            evt("referral", "referral.accepted"),
            evt("case", "victim.identified"),
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.load-x.nrm.evt.case.{CASE}.>",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.load-x.nrm.evt.referral.{REF}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.load-x",
            "$KV.nrm-case-keys.k1",
        ),
        ("nrm.cmd.shelter.register", "nrm.cmd.shelter.discharge.*"),
        ("nrm.cmd.referral.accept", "nrm.cmd.referral.accept.*"),
    ),
    "audit": (
        (
            "nrm.audit.victim.identified",
            f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.audit-all",
            f"$JS.API.DIRECT.GET.{AUDIT_STREAM}",  # catching up on its own log
        ),
        (
            evt("case", "victim.identified"),
            "$KV.nrm-case-keys.k1",
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.load-x.nrm.evt.case.{CASE}.>",
        ),
        ("nrm.ctl.dlq.redrive.audit-all",),
        ("nrm.cmd.screening.submit", "nrm.evt.>"),
    ),
    "custody": (
        (
            evt("access", "access.granted"),
            evt("agency", "agency.key_registered"),
            "$KV.nrm-case-keys.k1",
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}",  # a case and its referrals, in batches
        ),
        (
            evt("case", "victim.identified"),
            evt("referral", "referral.requested"),
            "nrm.audit.x",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.x",  # no consumer per read any more
        ),
        ("nrm.cmd.access.request", "nrm.cmd.agency.register_key.*"),
        ("nrm.cmd.screening.submit", "nrm.cmd.screening.submit.*"),
    ),
    "admin": (
        (
            f"$JS.API.STREAM.INFO.{EVENTS_STREAM}",
            f"$JS.API.STREAM.UPDATE.{DLQ_STREAM}",
            "nrm.ctl.dlq.redrive.audit-all",
        ),
        (
            evt("case", "victim.identified"),
            "nrm.audit.x",
            "nrm.cmd.screening.submit",
            f"nrm.cmd.screening.submit.{CRISIS}",
            f"$JS.API.STREAM.MSG.DELETE.{EVENTS_STREAM}",
            f"$JS.API.STREAM.UPDATE.{AUDIT_STREAM}",  # shrinking limits would discard entries
            f"$JS.API.STREAM.UPDATE.{EVENTS_STREAM}",
        ),
        ("_INBOX.admin.x",),
        ("nrm.evt.>", "nrm.cmd.>"),
    ),
    "auditor": (
        (),
        (
            "nrm.cmd.screening.submit",
            f"nrm.cmd.screening.submit.{CRISIS}",
            f"$JS.API.STREAM.INFO.{AUDIT_STREAM}",
            "nrm.audit.x",
        ),
        ("nrm.audit.>", "_INBOX.auditor.x"),
        ("nrm.evt.>", "nrm.cmd.>"),
    ),
    CRISIS: (
        (
            f"nrm.cmd.screening.submit.{CRISIS}",
            f"nrm.cmd.referral.accept.{CRISIS}",
            f"nrm.cmd.shelter.register.{CRISIS}",
            f"nrm.cmd.consent.record.{CRISIS}",
            f"nrm.cmd.case.erase.{CRISIS}",  # its own cases (the identifier checks which)
            # case lifecycle: its own cases, and transfers addressed to it (identifier checks)
            f"nrm.cmd.case.transfer_request.{CRISIS}",
            f"nrm.cmd.case.transfer_accept.{CRISIS}",
            f"nrm.cmd.case.transfer_decline.{CRISIS}",
            f"nrm.cmd.case.close.{CRISIS}",
            f"nrm.cmd.case.reopen.{CRISIS}",
            # follow-ups of its own cases (the identifier checks which)
            f"nrm.cmd.followup.schedule.{CRISIS}",
            f"nrm.cmd.followup.record.{CRISIS}",
            # presumed victims and reviews: an NGO that identifies decides its own presumed
            # cases, asks for reviews, and decides one assigned to it (identifier checks)
            f"nrm.cmd.screening.decide.{CRISIS}",
            f"nrm.cmd.identification.review_request.{CRISIS}",
            f"nrm.cmd.identification.review_decide.{CRISIS}",
            # the case plan of its own cases (the referral service checks the owner)
            f"nrm.cmd.need.add.{CRISIS}",
            f"nrm.cmd.need.remove.{CRISIS}",
            f"nrm.cmd.need.refer.{CRISIS}",
            f"nrm.cmd.access.request.{CRISIS}",
            f"nrm.cmd.referral.cross_border.{CRISIS}",  # its own cases (referral checks)
            f"nrm.cmd.proceeding.file_complaint.{CRISIS}",  # an NGO, on a victim's behalf
            "nrm.ctl.intake.key",  # it identifies: it seals personal data to the hub
            feed_create(CRISIS, CRISIS),
            f"$JS.API.CONSUMER.MSG.NEXT.{FEEDS_STREAM}.{CRISIS}",
        ),
        (
            evt("case", "victim.identified"),
            evt("referral", "referral.accepted"),
            "nrm.audit.x",
            f"nrm.feed.{CRISIS}.{REF}.referral.requested",
            f"$JS.API.STREAM.INFO.{EVENTS_STREAM}",
            f"$JS.API.STREAM.MSG.GET.{EVENTS_STREAM}",
            f"$JS.API.STREAM.MSG.GET.{FEEDS_STREAM}",
            # A batch request's filter is in its body: it could read any agency's feed.
            f"$JS.API.DIRECT.GET.{FEEDS_STREAM}",
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}",
            feed_create(CLINIC, CLINIC),
            feed_create(CRISIS, CLINIC),
            feed_create(CLINIC, CRISIS),
            f"$JS.API.CONSUMER.CREATE.{FEEDS_STREAM}.{CRISIS}",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{FEEDS_STREAM}.{CRISIS}",
            f"$JS.API.CONSUMER.MSG.NEXT.{FEEDS_STREAM}.{CLINIC}",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.x.nrm.evt.case.{CASE}.>",
            "$KV.nrm-case-keys.k1",
            "nrm.ctl.dlq.redrive.audit-all",
            f"nrm.cmd.agency.register_key.{CRISIS}",  # only the coordinating body does
            # The open subjects (no sender in them) and other agencies' own subjects:
            "nrm.cmd.screening.submit",
            "nrm.cmd.case.erase",
            "nrm.cmd.consent.record",
            "nrm.cmd.referral.accept",
            f"nrm.cmd.case.erase.{COORD}",
            f"nrm.cmd.consent.record.{COORD}",
            f"nrm.cmd.referral.accept.{CLINIC}",
            f"nrm.cmd.screening.submit.{CLINIC}",
            f"nrm.cmd.case.erase.{CRISIS}.x",  # its id, not as the last token
            # case lifecycle, in another agency's name or on the open subject
            "nrm.cmd.case.close",
            f"nrm.cmd.case.close.{COORD}",
            f"nrm.cmd.case.transfer_request.{COORD}",
            f"nrm.cmd.case.transfer_accept.{CLINIC}",
            evt("case", "case.transferred"),
            f"nrm.cmd.followup.schedule.{COORD}",
            "nrm.cmd.followup.record",
            evt("case", "case.followup_scheduled"),
            "$KV.nrm-followups-due.k1",
            f"nrm.cmd.identification.review_assign.{CRISIS}",  # the coordinating body's
            f"nrm.cmd.identification.review_request.{COORD}",
            evt("case", "case.review_requested"),
            f"nrm.cmd.referral.reassign.{CRISIS}",  # only the coordinating body reassigns
            f"nrm.cmd.need.refer.{COORD}",
            evt("need", "need.referred"),
            # criminal proceedings: an NGO files complaints, nothing else
            f"nrm.cmd.proceeding.open_investigation.{CRISIS}",
            f"nrm.cmd.proceeding.bring_charges.{CRISIS}",
            f"nrm.cmd.proceeding.record_decision.{CRISIS}",
            f"nrm.cmd.proceeding.record_participation.{CRISIS}",
            f"nrm.cmd.proceeding.file_complaint.{CLINIC}",
            evt("proceeding", "proceeding.complaint_filed"),
        ),
        (f"_INBOX.{CRISIS}.x",),
        ("nrm.cmd.>", "nrm.evt.>", f"nrm.feed.{CRISIS}.>", "nrm.audit.>", f"_INBOX.{CLINIC}.>"),
    ),
    CLINIC: (
        (
            f"nrm.cmd.referral.accept.{CLINIC}",
            f"nrm.cmd.referral.decline.{CLINIC}",
            f"nrm.cmd.access.request.{CLINIC}",
            feed_create(CLINIC, CLINIC),
            # any agency may answer a transfer (the identifier checks it is addressed to it)
            f"nrm.cmd.case.transfer_accept.{CLINIC}",
            f"nrm.cmd.case.transfer_decline.{CLINIC}",
            # a provider follows up the cases it took on (the identifier checks the referral)
            f"nrm.cmd.followup.schedule.{CLINIC}",
            f"nrm.cmd.followup.record.{CLINIC}",
            # an NGO speaks for the person: it may ask for a review of a non-identification
            f"nrm.cmd.identification.review_request.{CLINIC}",
            # a provider records the service it delivers as it happens
            f"nrm.cmd.referral.deliver.{CLINIC}",
            # an NGO files a criminal complaint on the victim's behalf
            f"nrm.cmd.proceeding.file_complaint.{CLINIC}",
        ),
        (
            f"nrm.cmd.screening.submit.{CLINIC}",  # it does not identify
            f"nrm.cmd.shelter.register.{CLINIC}",
            f"nrm.cmd.case.erase.{CLINIC}",
            f"nrm.cmd.agency.register_key.{CLINIC}",
            "nrm.ctl.intake.key",
            "nrm.cmd.referral.accept",
            "nrm.cmd.referral.decline",
            f"nrm.cmd.referral.decline.{CRISIS}",
            f"nrm.cmd.referral.cross_border.{CLINIC}",  # it identifies no case of its own
            f"nrm.cmd.case.erase.{COORD}",
            feed_create(CRISIS, CRISIS),
            # it identifies no case, so it owns none: no transfer, closure or reopening
            f"nrm.cmd.case.transfer_request.{CLINIC}",
            f"nrm.cmd.case.close.{CLINIC}",
            f"nrm.cmd.case.reopen.{CLINIC}",
            f"nrm.cmd.case.transfer_accept.{CRISIS}",
            f"nrm.cmd.followup.schedule.{CRISIS}",
            # it identifies no case: it neither decides one nor a review
            f"nrm.cmd.screening.decide.{CLINIC}",
            f"nrm.cmd.identification.review_decide.{CLINIC}",
            f"nrm.cmd.identification.review_assign.{CLINIC}",
            # it owns no case: no case plan; it reassigns nothing
            f"nrm.cmd.need.add.{CLINIC}",
            f"nrm.cmd.need.refer.{CLINIC}",
            f"nrm.cmd.referral.reassign.{CLINIC}",
            f"nrm.cmd.referral.deliver.{CRISIS}",
            f"nrm.cmd.proceeding.open_investigation.{CLINIC}",  # law enforcement's
            f"nrm.cmd.proceeding.record_decision.{CLINIC}",  # the prosecution's
        ),
        (f"_INBOX.{CLINIC}.x",),
        (f"nrm.feed.{CLINIC}.>", "nrm.cmd.referral.accept"),
    ),
    COORD: (
        (
            f"nrm.cmd.referral.revoke.{COORD}",
            f"nrm.cmd.case.erase.{COORD}",
            f"nrm.cmd.consent.record.{COORD}",
            f"nrm.cmd.agency.register_key.{COORD}",
            f"nrm.cmd.referral.cross_border.{COORD}",
            feed_create(COORD, COORD),
            f"nrm.cmd.case.transfer_request.{COORD}",
            f"nrm.cmd.case.close.{COORD}",
            f"nrm.cmd.case.reopen.{COORD}",
            f"nrm.cmd.followup.schedule.{COORD}",
            f"nrm.cmd.followup.record.{COORD}",
            f"nrm.cmd.screening.decide.{COORD}",
            f"nrm.cmd.identification.review_assign.{COORD}",
            f"nrm.cmd.identification.review_decide.{COORD}",
            f"nrm.cmd.referral.reassign.{COORD}",
            f"nrm.cmd.need.add.{COORD}",
            f"nrm.cmd.need.refer.{COORD}",
        ),
        (
            f"nrm.cmd.referral.accept.{COORD}",
            f"nrm.cmd.screening.submit.{COORD}",
            "nrm.cmd.case.erase",
            "nrm.cmd.agency.register_key",
            f"nrm.cmd.case.erase.{CRISIS}",
            f"nrm.cmd.agency.register_key.{CRISIS}",
            evt("case", "case.erased"),
            f"nrm.cmd.case.close.{CRISIS}",
            evt("case", "case.closed"),
            f"nrm.cmd.identification.review_request.{COORD}",  # it does not represent anyone
            f"nrm.cmd.identification.review_decide.{CRISIS}",
            f"nrm.cmd.referral.reassign.{CRISIS}",
            f"nrm.cmd.referral.deliver.{COORD}",  # it provides no service
            # criminal proceedings are for law enforcement and the victim's representatives
            f"nrm.cmd.proceeding.file_complaint.{COORD}",
            f"nrm.cmd.proceeding.open_investigation.{COORD}",
            f"nrm.cmd.proceeding.record_decision.{COORD}",
            # The worklists (`nrm cases`) and statistics read the whole event stream: the
            # operators' admin user does, for the secretariat; no agency user may.
            f"$JS.API.DIRECT.GET.{EVENTS_STREAM}",
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}",
        ),
        (f"_INBOX.{COORD}.x",),
        ("nrm.evt.>",),
    ),
    # Criminal proceedings: the prosecution records every stage, the court's decision too.
    PROSECUTOR: (
        (
            f"nrm.cmd.proceeding.file_complaint.{PROSECUTOR}",
            f"nrm.cmd.proceeding.open_investigation.{PROSECUTOR}",
            f"nrm.cmd.proceeding.bring_charges.{PROSECUTOR}",
            f"nrm.cmd.proceeding.record_decision.{PROSECUTOR}",
            f"nrm.cmd.proceeding.record_participation.{PROSECUTOR}",
            f"nrm.cmd.access.request.{PROSECUTOR}",
        ),
        (
            f"nrm.cmd.screening.submit.{PROSECUTOR}",  # it does not identify
            f"nrm.cmd.proceeding.record_decision.{POLICE}",  # in another agency's name
            "nrm.cmd.proceeding.record_decision",  # the open subject
            evt("proceeding", "proceeding.decision_recorded"),  # only the identifier writes
            f"nrm.cmd.case.close.{PROSECUTOR}",
        ),
        (f"_INBOX.{PROSECUTOR}.x",),
        ("nrm.evt.>", "nrm.cmd.>"),
    ),
    # Internal affairs: investigations, charges and participation, not the court's decision.
    POLICE: (
        (
            f"nrm.cmd.screening.submit.{POLICE}",
            f"nrm.cmd.proceeding.file_complaint.{POLICE}",
            f"nrm.cmd.proceeding.open_investigation.{POLICE}",
            f"nrm.cmd.proceeding.bring_charges.{POLICE}",
            f"nrm.cmd.proceeding.record_participation.{POLICE}",
        ),
        (
            f"nrm.cmd.proceeding.record_decision.{POLICE}",
            f"nrm.cmd.proceeding.open_investigation.{PROSECUTOR}",
            evt("proceeding", "proceeding.investigation_opened"),
        ),
        (f"_INBOX.{POLICE}.x",),
        ("nrm.evt.>", "nrm.cmd.>"),
    ),
}


@pytest.mark.parametrize("role", list(MATRIX))
async def test_each_role_may_do_exactly_what_its_allow_lists_say(
    cluster: SecuredCluster, role: str
) -> None:
    pub_ok, pub_denied, sub_ok, sub_denied = MATRIX[role]
    async with connected(cluster, role) as probe:
        wrong = [s for s in pub_ok if not await probe.can_publish(s)]
        assert not wrong, f"{role} should publish to {wrong}"
        wrong = [s for s in (*pub_denied, *DENIED_TO_ALL_PUBLISH) if await probe.can_publish(s)]
        assert not wrong, f"{role} must not publish to {wrong}"
        wrong = [s for s in sub_ok if not await probe.can_subscribe(s)]
        assert not wrong, f"{role} should subscribe to {wrong}"
        wrong = [
            s
            for s in (*sub_denied, *DENIED_TO_ALL_SUBSCRIBE, anothers_inbox(role))
            if await probe.can_subscribe(s)
        ]
        assert not wrong, f"{role} must not subscribe to {wrong}"


async def _audit_count(cluster: SecuredCluster) -> int:
    async with connected(cluster, "admin") as admin:
        return (await admin.nc.jetstream().stream_info(AUDIT_STREAM)).state.messages


@pytest.mark.parametrize("role", EVERY_ROLE)
async def test_nobody_can_delete_or_purge_the_audit_stream(
    cluster: SecuredCluster, role: str
) -> None:
    async with connected(cluster, "audit") as audit:
        await audit.nc.jetstream().publish("nrm.audit.test.entry", b"{}")
    before = await _audit_count(cluster)
    assert before >= 1
    async with connected(cluster, role) as probe:
        js = probe.nc.jetstream(timeout=1.0)
        outcomes = await asyncio.gather(
            js.delete_stream(AUDIT_STREAM),
            js.purge_stream(AUDIT_STREAM),
            # js.delete_msg has no timeout parameter (5 s); the same request, bounded:
            probe.nc.request(f"$JS.API.STREAM.MSG.DELETE.{AUDIT_STREAM}", b'{"seq": 1}', 1.0),
            return_exceptions=True,
        )
        refused = (NatsTimeoutError, NoRespondersError, APIError)
        assert all(isinstance(o, refused) for o in outcomes), outcomes
        await probe._settled()
        for op in ("STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE"):
            # Refused by the permissions, not only by the stream's deny_delete/deny_purge.
            assert probe._violated("publish", f"$JS.API.{op}.{AUDIT_STREAM}"), probe.errors
    assert await _audit_count(cluster) == before


async def test_identifier_cannot_write_a_shelter_event_to_the_stream(
    cluster: SecuredCluster,
) -> None:
    subject = evt("shelter", "shelter.admitted")
    async with connected(cluster, "identifier") as identifier:
        with pytest.raises((NatsTimeoutError, NoRespondersError)):
            await identifier.nc.jetstream(timeout=1.0).publish(subject, b"{}")
    async with connected(cluster, "admin") as admin:
        with pytest.raises(NatsError):  # not found: nothing was stored under it
            await admin.nc.jetstream().get_last_msg(EVENTS_STREAM, subject)


async def test_one_agency_cannot_snoop_anothers_replies(cluster: SecuredCluster) -> None:
    async with (
        connected(cluster, "identifier") as identifier,
        connected(cluster, CRISIS) as crisis,
        connected(cluster, CLINIC) as clinic,
    ):
        seen: list[str] = []

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"reply-for-crisis-centre-only")

        await identifier.nc.subscribe(f"nrm.cmd.screening.submit.{CRISIS}", cb=answer)
        await flush_confirmed(identifier.nc)
        for snoop in ("_INBOX.>", f"_INBOX.{CRISIS}.>", "_INBOX.*.*", ">"):

            async def record(msg: nats.aio.msg.Msg) -> None:
                seen.append(msg.subject)

            clinic.errors.clear()
            await clinic.nc.subscribe(snoop, cb=record)
            await clinic._settled()
            assert clinic._violated("subscription", snoop), snoop
        reply = await crisis.nc.request(f"nrm.cmd.screening.submit.{CRISIS}", b"{}", timeout=5)
        assert reply.data == b"reply-for-crisis-centre-only"
        assert reply.subject.startswith(f"_INBOX.{CRISIS}.")
        await flush_confirmed(clinic.nc)
        assert seen == []


async def test_an_agency_without_its_inbox_prefix_gets_no_replies(
    cluster: SecuredCluster,
) -> None:
    async with connected(cluster, CRISIS, inbox_prefix="_INBOX") as crisis:
        with pytest.raises((NatsTimeoutError, NoRespondersError)):
            await crisis.nc.request(f"nrm.cmd.screening.submit.{CRISIS}", b"{}", timeout=1)
        assert any("subscription" in e.lower() for e in crisis.errors), crisis.errors


async def test_agencies_read_their_own_feed_and_nothing_else(cluster: SecuredCluster) -> None:
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    async with connected(cluster, "referral") as referral:
        js = referral.nc.jetstream()
        await js.publish(f"nrm.feed.{CRISIS}.{mine}.referral.requested", b'{"n": 1}')
        await js.publish(f"nrm.feed.{CLINIC}.{theirs}.referral.requested", b'{"n": 2}')
    async with connected(cluster, CRISIS) as crisis:
        js = crisis.nc.jetstream(timeout=2.0)
        config = ConsumerConfig(
            name=CRISIS,
            durable_name=CRISIS,
            filter_subject=f"nrm.feed.{CRISIS}.>",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
        )
        await js.add_consumer(FEEDS_STREAM, config)
        sub = await js.pull_subscribe_bind(CRISIS, FEEDS_STREAM)
        got = await sub.fetch(10, timeout=2)
        for msg in got:
            await msg.ack()
        assert {m.subject for m in got} >= {f"nrm.feed.{CRISIS}.{mine}.referral.requested"}
        assert all(m.subject.startswith(f"nrm.feed.{CRISIS}.") for m in got)
        # The other agency's feed, by name or by filter: refused by the server.
        for name, owner in ((CLINIC, CLINIC), (CRISIS, CLINIC)):
            other = ConsumerConfig(
                name=name, durable_name=name, filter_subject=f"nrm.feed.{owner}.>"
            )
            with pytest.raises((NatsTimeoutError, NoRespondersError)):
                await js.add_consumer(FEEDS_STREAM, other)
        # The allowed create subject with another filter in the body: the server refuses it
        # (the subject's filter must match the configuration's).
        body = {
            "stream_name": FEEDS_STREAM,
            "config": {
                "name": CRISIS,
                "durable_name": CRISIS,
                "filter_subjects": [f"nrm.feed.{CLINIC}.>"],
                "ack_policy": "explicit",
                "deliver_policy": "all",
            },
        }
        reply = await crisis.nc.request(
            feed_create(CRISIS, CRISIS), json.dumps(body).encode(), timeout=2
        )
        assert "error" in json.loads(reply.data), reply.data


async def test_a_service_lists_its_bucket_and_leaves_no_consumer_behind(
    cluster: SecuredCluster,
) -> None:
    """Listings read a bucket's stream through a consumer of their own (keyvalue_jetstream):
    its user may create it, read it and delete it, without one violation."""
    bucket_name = "nrm-followups-due"
    case_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    async with connected(cluster, "identifier") as identifier:
        bucket = await JetStreamKeyValue.open(identifier.nc, bucket_name)
        for key in (f"{case_id}.a", f"{case_id}.b", f"{other}.a"):
            await bucket.put(key, b'{"due_on": "2026-12-31"}')
        assert sorted(await bucket.keys(under=case_id)) == [f"{case_id}.a", f"{case_id}.b"]
        listed = {entry.key for entry in await bucket.entries()}
        assert {f"{case_id}.a", f"{case_id}.b", f"{other}.a"} <= listed
        for key in (f"{case_id}.a", f"{case_id}.b", f"{other}.a"):
            await bucket.delete(key)
        assert identifier.errors == []
    async with connected(cluster, "admin") as admin:
        info = await admin.nc.jetstream().stream_info(f"KV_{bucket_name}")
        assert info.state.consumer_count == 0


async def test_the_auditor_sees_audit_entries_from_its_own_account(
    cluster: SecuredCluster,
) -> None:
    async with connected(cluster, "auditor") as auditor:
        sub = await auditor.nc.subscribe("nrm.audit.>")
        await flush_confirmed(auditor.nc)
        async with connected(cluster, "audit") as audit:
            await audit.nc.jetstream().publish("nrm.audit.victim.identified", b'{"entry": 1}')
        msg = await sub.next_msg(timeout=5)
        assert msg.subject == "nrm.audit.victim.identified"


def _tls(cluster: SecuredCluster, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cluster.certs / "ca.pem"))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


async def test_no_connection_without_a_known_client_certificate(
    cluster: SecuredCluster, tmp_path: Path
) -> None:
    from tests.integration.secured_hub import make_certs

    stranger = make_certs(tmp_path / "other-ca", ["nats-1"])  # same names, another CA
    leaf_cert, leaf_key = cluster.user_cert("leaf-kz")  # a peer hub's cert: leaf port only
    stranger_cert = stranger / "users" / "identifier.pem"
    stranger_key = stranger / "users" / "identifier-key.pem"
    for cert, key in ((None, None), (stranger_cert, stranger_key), (leaf_cert, leaf_key)):
        with pytest.raises((NatsError, OSError, ssl.SSLError)):
            await nats.connect(
                nats_servers(cluster.url),
                tls=_tls(cluster, cert, key),
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
            )


async def _routed_from(node: SecuredNode) -> set[str]:
    """The servers `node` has routes with, by name (its monitoring port, /routez)."""
    url = f"http://127.0.0.1:{node.monitor_port}/routez"
    with urllib.request.urlopen(url, timeout=2) as reply:
        return {route["remote_name"] for route in json.load(reply)["routes"]}


async def test_an_agency_certificate_cannot_join_the_cluster_as_a_route(tmp_path: Path) -> None:
    """No permission applies to a route: a process that joins the cluster as one could read
    and publish everything. Every certificate of the hub's CA may dial a route port, so the
    cluster also checks that a route's certificate names one of the route URLs
    (`verify_cert_and_check_known_urls`). A nats-server started with hub.conf and an
    agency's own certificate, dialling a node's route port, is refused; without that check it
    joined (its pooled routes appeared on the node). Its own cluster: the refusal is logged
    as a violation, which the shared cluster's tests must not see."""
    own = SecuredCluster(tmp_path / "cluster")
    own.start()
    rogue: SecuredNode | None = None
    try:
        node = own.nodes[0]

        async def formed() -> bool:
            return await _routed_from(node) == {"nats-2", "nats-3"}

        await wait_until(formed, timeout=20)
        ports = {k: free_port() for k in ("client", "monitor", "cluster", "leaf")}
        route_port = int(node.env["NATS_CLUSTER_LISTEN"].rsplit(":", 1)[1])
        env = node_env(own.certs, "nats-1", ports, [route_port], tmp_path / "rogue-js")
        cert, key = own.user_cert(CRISIS)
        env.update(NATS_SERVER_NAME="rogue", NATS_CERT_FILE=str(cert), NATS_KEY_FILE=str(key))
        rogue = SecuredNode("rogue", env, tmp_path / "rogue.log", NATS_CONFIGS / "hub.conf", "kg")
        rogue.start()
        log = rogue.log

        async def refused() -> bool:
            return "Authorization Violation" in log.read_text(errors="replace")

        await wait_until(refused, timeout=20)
        assert await _routed_from(node) == {"nats-2", "nats-3"}
    finally:
        if rogue is not None:
            rogue.stop()
        own.stop()


async def _feed(cluster: SecuredCluster, agency: str) -> list[str]:
    """The event types in an agency's feed, read as the agency would."""
    async with connected(cluster, agency) as probe:
        js = probe.nc.jetstream(timeout=2.0)
        config = ConsumerConfig(
            name=agency,
            durable_name=agency,
            filter_subject=f"nrm.feed.{agency}.>",
            ack_policy=AckPolicy.EXPLICIT,
        )
        await js.add_consumer(FEEDS_STREAM, config)
        try:
            sub = await js.pull_subscribe_bind(agency, FEEDS_STREAM)
            info = await js.consumer_info(FEEDS_STREAM, agency)
            if not info.num_pending:
                return []
            got = await sub.fetch(info.num_pending, timeout=2)
        finally:  # read from the start each time
            await js.delete_consumer(FEEDS_STREAM, agency)
        return [".".join(m.subject.split(".")[-2:]) for m in got]


async def test_the_hub_runs_on_the_secured_cluster_without_a_single_violation(
    tmp_path: Path,
) -> None:
    """Every service connects as its own user and does its whole job: the allow-lists are
    enough, and an agency reads the referrals addressed to it from its feed."""
    secured = SecuredCluster(tmp_path / "hub")
    secured.start()
    try:
        await bootstrap(secured.url, secured.settings("admin", tmp_path))
        services = []
        # Identifier and custody share the key-encryption key ring (case keys are theirs).
        shared_kek = tmp_path / "kek"
        for name in SERVICES:
            settings = secured.settings(
                name,
                tmp_path / name,
                max_deliver=3,
                retry_backoff_seconds=(0.05, 0.1),
                kek_file=shared_kek,
            )
            create_hub_keys(settings)
            services.append(await start_service(name, secured.url, settings))
        try:
            async with connected(secured, CRISIS) as crisis:
                client = HubClient(crisis.nc)
                shelter = RegisterShelter(
                    command_id=uuid.uuid4(), agency_id=CRISIS, capacity={"women": 2}
                )
                assert (await client.send(shelter))["status"] == "accepted"
                identified = await client.send(screening(CRISIS))
                assert identified["status"] == "accepted"
            # Personal data: the coordinating body registers the centre's key, and the centre
            # (the identifying agency) opens the name, all within the allow-lists.
            centre_key = generate_private_key()
            async with connected(secured, COORD) as coord:
                registered = await HubClient(coord.nc).register_agency_key(
                    COORD, CRISIS, centre_key.public_key()
                )
                assert registered["status"] == "accepted"
            async with connected(secured, CRISIS) as crisis:
                centre = AgencyClient(crisis.nc, CRISIS, centre_key)
                case_id = uuid.UUID(identified["aggregate_id"])
                opened = await centre.open_fields(case_id, DataPurpose.ASSISTANCE)
                assert opened[PersonalField.FULL_NAME] == CANARY_NAME

            async def crisis_feed() -> list[str]:
                types = await _feed(secured, CRISIS)
                return types if "referral.accepted" in types else []

            assert "referral.requested" in await wait_until(crisis_feed, timeout=30)
            assert await wait_until(lambda: _feed(secured, CLINIC), timeout=30) == [
                "referral.requested"
            ]

            async def audited() -> bool:
                async with connected(secured, "admin") as admin:
                    js = admin.nc.jetstream()
                    audit = (await js.stream_info(AUDIT_STREAM)).state.messages
                    return audit == (await js.stream_info(EVENTS_STREAM)).state.messages

            await wait_until(audited, timeout=30)
            async with connected(secured, "admin") as admin:  # what `nrm status` does
                status = await hub_status(admin.nc)
            assert {i.service for i in status.instances} == set(SERVICES)
            assert all(c.lag is not None for c in status.consumers)
            assert status.last_audit is not None
        finally:
            for service in services:
                await service.stop()
        assert secured.violations() == ""
    finally:
        secured.stop()


async def test_a_peer_hub_sees_only_the_cross_border_subjects(
    cluster: SecuredCluster, tmp_path: Path
) -> None:
    """Kazakhstan's hub joins as a leaf node with its certificate and lands in its own pair
    account XB_KZ: what Kyrgyzstan sends Kazakhstan (nrm.xb.kg.kz.>) reaches it, what it sends
    Kyrgyzstan (nrm.xb.kz.kg.>) comes back; nothing else crosses in either direction: no
    events, audit entries, commands or keys, nothing sent to Uzbekistan, nothing Kazakhstan
    sends in Uzbekistan's name."""
    env = {
        "NATS_SERVER_NAME": "peer-kz",
        "NATS_CLIENT_LISTEN": f"127.0.0.1:{free_port()}",
        "NATS_CA_FILE": str(cluster.certs / "ca.pem"),
        **leaf_env(cluster.certs, cluster.nodes[0].leaf_port),
    }
    peer = SecuredNode("peer-kz", env, tmp_path / "peer.log", NATS_CONFIGS / "leaf-remote.conf")
    peer.start()
    try:
        await wait_until(lambda: asyncio.to_thread(peer.ready), timeout=15)
        peer_nc = await nats.connect(f"nats://{env['NATS_CLIENT_LISTEN']}")
        seen: list[str] = []
        try:

            async def on_any(msg: nats.aio.msg.Msg) -> None:
                seen.append(msg.subject)

            await peer_nc.subscribe(">", cb=on_any)
            await flush_confirmed(peer_nc)
            async with (
                connected(cluster, "identifier") as identifier,
                connected(cluster, "audit") as audit,
                connected(cluster, "referral") as referral,
            ):
                incoming = await referral.nc.subscribe("nrm.xb.*.kg.>")
                commands = await identifier.nc.subscribe("nrm.cmd.screening.submit")
                tagged = await identifier.nc.subscribe("nrm.cmd.screening.submit.*")
                await identifier.nc.publish(evt("case", "victim.identified"), b"{}")
                await audit.nc.publish("nrm.audit.victim.identified", b"{}")
                await referral.nc.publish("nrm.xb.kg.uz.pkg", b"{}")  # Uzbekistan's, not kz's
                await referral.nc.publish("nrm.xb.outbox.kz.x", b"{}")  # local: never crosses
                for nc in (identifier.nc, audit.nc, referral.nc):
                    await flush_confirmed(nc)

                async def crossed() -> bool:
                    await referral.nc.publish("nrm.xb.kg.kz.pkg", b"{}")
                    await asyncio.sleep(0.1)
                    return "nrm.xb.kg.kz.pkg" in seen

                await wait_until(crossed, timeout=15)
                assert set(seen) == {"nrm.xb.kg.kz.pkg"}, seen

                async def came_back() -> bool:
                    await peer_nc.publish("nrm.cmd.screening.submit", b"{}")
                    await peer_nc.publish(f"nrm.cmd.screening.submit.{CRISIS}", b"{}")
                    await peer_nc.publish("nrm.evt.case.x.victim.identified", b"{}")
                    await peer_nc.publish("nrm.xb.uz.kg.pkg", b"{}")  # posing as Uzbekistan
                    await peer_nc.publish("nrm.xb.kz.kg.ack", b"{}")
                    try:
                        return (await incoming.next_msg(timeout=0.2)).subject == "nrm.xb.kz.kg.ack"
                    except NatsTimeoutError:
                        return False

                await wait_until(came_back, timeout=15)
                for sub in (commands, tagged):
                    with pytest.raises(NatsTimeoutError):
                        await sub.next_msg(timeout=0.5)
                while True:  # of everything the peer sent, only its own pair's subject came
                    try:
                        msg = await incoming.next_msg(timeout=0.3)
                    except NatsTimeoutError:
                        break
                    assert msg.subject == "nrm.xb.kz.kg.ack", msg.subject
        finally:
            await peer_nc.close()
    finally:
        peer.stop()

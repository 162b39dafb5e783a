"""The service table: every service of the hub, declared once.

Each entry says what the service answers (its commands, and per command which agency roles
may send it), which durables it runs, which aggregates it writes and loads, which buckets,
streams and request subjects it uses, and which key files it needs. From it are derived:
which services exist and how each is built (services/bootstrap.py, which maps a name to its
`register`), command routing (a service subscribes to exactly its commands, checked at
start-up), the durables bootstrap creates (services/runtime/topology.py) and every NATS
user's permissions (services/runtime/permissions.py -> deploy/nats/).

Data only: it imports contracts and the plumbing's names, never a service package, so the
plumbing may import it (tests/unit/test_service_table.py checks both).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from nats.js.api import ConsumerConfig

from contracts.commands import (
    AcceptCaseTransfer,
    AcceptReferral,
    AddNeed,
    AssignIdentificationReview,
    BringCharges,
    CheckAttestation,
    CloseCase,
    Command,
    CompleteReferral,
    DecideIdentificationReview,
    DecideScreening,
    DeclineCaseTransfer,
    DeclineReferral,
    DeliverService,
    DischargeFromShelter,
    EraseCase,
    FileComplaint,
    IssueAttestation,
    OpenInvestigation,
    ReassignReferral,
    RecordConsent,
    RecordCourtDecision,
    RecordFollowUp,
    RecordVictimParticipation,
    ReferNeed,
    RegisterAgencyKey,
    RegisterShelter,
    RemoveNeed,
    ReopenCase,
    RequestAccess,
    RequestCaseTransfer,
    RequestCrossBorderReferral,
    RequestIdentificationReview,
    RevokeAttestation,
    RevokeReferral,
    ScheduleFollowUp,
    SubmitScreening,
    WithdrawConsent,
)
from contracts.events import (
    CaseClosed,
    CaseErased,
    CaseNoticeFromAbroadApplied,
    CaseReceivedFromAbroad,
    ConsentRecorded,
    ConsentWithdrawn,
    FollowUpOverdue,
    FollowUpRecorded,
    FollowUpScheduled,
    NeedReferred,
    ReferralAccepted,
    ReferralCompleted,
    ReferralCrossBorderNoticeSent,
    ReferralCrossBorderRequested,
    ReferralDeclined,
    ReferralRequested,
    ReferralRevoked,
    VictimIdentified,
    VictimNotIdentified,
    VictimPresumed,
)
from contracts.subjects import (
    ATTESTATION_KEY_SUBJECT,
    ATTESTATION_STATUS_SUBJECT,
    AUDIT_PREFIX,
    AUDIT_STREAM,
    CASE_EVENTS_FOR_FEED,
    CHECKPOINT_REQUEST,
    CHECKPOINT_SUBJECT,
    CHECKPOINTS_STREAM,
    EVENT_PREFIX,
    EVENTS_STREAM,
    FEED_PREFIX,
    INTAKE_KEY_SUBJECT,
    REJECTIONS_PREFIX,
    REJECTIONS_STREAM,
    event_type_filter,
)
from contracts.vocabulary import AgencyKind, Service
from services.agencies.registry import Agency, AgencyRegistry
from services.runtime.settings import Settings
from services.runtime.topology import (
    BLIND_INDEX_BUCKET,
    CASE_KEYS_BUCKET,
    FOLLOWUPS_DUE_BUCKET,
    REFERRAL_DEADLINES_BUCKET,
    AuditConsumerSpec,
    ConsumerSpec,
    Takeover,
    xb_consumer_configs,
)

JS = "$JS.API"


class Sender(Enum):
    """An agency role that may send a command; the registry says who holds it."""

    ANY = "any agency"
    IDENTIFYING = "an agency that may identify"
    PROVIDER = "an agency providing a service"
    SHELTER = "a shelter"
    COORDINATING_BODY = "the coordinating body"
    # Speaks for the person: asks for a review of a non-identification.
    REPRESENTATIVE = "an NGO or the ombudsperson"
    # Criminal proceedings: investigations, charges (police and prosecution); court decisions.
    LAW_ENFORCEMENT = "the prosecution or internal affairs"
    PROSECUTION = "the prosecution"

    def admits(self, agency: Agency, registry: AgencyRegistry) -> bool:
        if self is Sender.ANY:
            return True
        if self is Sender.REPRESENTATIVE:
            return agency.kind in (AgencyKind.NGO, AgencyKind.OMBUDSPERSON)
        if self is Sender.LAW_ENFORCEMENT:
            return agency.kind in (AgencyKind.PROSECUTION, AgencyKind.INTERNAL_AFFAIRS)
        if self is Sender.PROSECUTION:
            return agency.kind is AgencyKind.PROSECUTION
        if self is Sender.IDENTIFYING:
            return agency.may_identify
        if self is Sender.PROVIDER:
            return bool(agency.services)
        if self is Sender.SHELTER:
            return Service.SHELTER in agency.services
        return agency.id == registry.coordinating_body


class Key(Enum):
    """A key file a service reads, by the setting that names it."""

    KEK = "NRM_KEK_FILE"  # the key ring that wraps per-case data keys
    INTAKE = "NRM_INTAKE_KEY_FILE"  # the hub's private intake key (agencies seal to it)
    BLIND_INDEX = "NRM_BLIND_INDEX_KEY_FILE"  # keys the duplicate-detection index
    AUDIT_SIGNING = "NRM_AUDIT_SIGNING_KEY_FILE"  # signs audit checkpoints
    ATTESTATION_SIGNING = "NRM_ATTESTATION_SIGNING_KEY_FILE"  # signs attestations, status list

    def path(self, settings: Settings) -> Path:
        """Where the settings put this key file."""
        if self is Key.KEK:
            return settings.key_encryption_key_file
        if self is Key.INTAKE:
            return settings.intake_private_key_file
        if self is Key.BLIND_INDEX:
            return settings.blind_index_secret_file
        if self is Key.ATTESTATION_SIGNING:
            return settings.attestation_signing_key
        return settings.audit_signing_key


Consumer = ConsumerSpec | AuditConsumerSpec


@dataclass(frozen=True)
class Entry:
    """One service. A command's senders sit next to it: the owner and who may send it are
    declared together, so a new command cannot get one without the other."""

    name: str
    commands: dict[type[Command], tuple[Sender, ...]] = field(default_factory=dict)
    consumers: tuple[Consumer, ...] = ()  # durables it runs (bootstrap creates them)
    writes: tuple[str, ...] = ()  # aggregates whose events it appends
    # Aggregates whose history it reads (documentation: direct get cannot be narrowed to them).
    loads: tuple[str, ...] = ()
    buckets: tuple[str, ...] = ()  # KV buckets it reads and writes
    answers: tuple[str, ...] = ()  # request subjects beyond its commands
    publishes: tuple[str, ...] = ()  # other subjects it publishes to, e.g. audit entries, feeds
    # Runs the cross-border link (docs/CROSSBORDER.md): a relay per peer on the outbox and
    # ingress on the inbox, and exchanges packages with partner hubs on nrm.xb.>.
    cross_border: bool = False
    keys: tuple[Key, ...] = ()


TABLE: tuple[Entry, ...] = (
    Entry(
        "identifier",
        commands={
            SubmitScreening: (Sender.IDENTIFYING,),
            RecordConsent: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            WithdrawConsent: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            EraseCase: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            # Case lifecycle. A case's owner is always an agency that may identify (transfers
            # go only to such agencies); the domain checks it is this case's owner, and for an
            # answer the agency the pending transfer names.
            RequestCaseTransfer: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            AcceptCaseTransfer: (Sender.ANY,),
            DeclineCaseTransfer: (Sender.ANY,),
            CloseCase: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            ReopenCase: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            # Follow-ups: the case's owner, the coordinating body, or a provider with an
            # accepted or completed referral of the case (the domain checks which case).
            ScheduleFollowUp: (Sender.IDENTIFYING, Sender.PROVIDER, Sender.COORDINATING_BODY),
            RecordFollowUp: (Sender.IDENTIFYING, Sender.PROVIDER, Sender.COORDINATING_BODY),
            # Presumed victims: the owner (an agency that may identify) or the coordinating
            # body decides. Reviews: a representative asks, the coordinating body assigns and
            # decides, or the agency it assigned (one that may identify) decides.
            DecideScreening: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            RequestIdentificationReview: (Sender.REPRESENTATIVE,),
            AssignIdentificationReview: (Sender.COORDINATING_BODY,),
            DecideIdentificationReview: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            # Criminal proceedings (services/identifier/proceeding_rules.py checks the kinds):
            # a complaint by a representative of the victim or received by law enforcement;
            # investigations, charges and participation by law enforcement; the court's
            # decision by the prosecution.
            FileComplaint: (Sender.REPRESENTATIVE, Sender.LAW_ENFORCEMENT),
            OpenInvestigation: (Sender.LAW_ENFORCEMENT,),
            BringCharges: (Sender.LAW_ENFORCEMENT,),
            RecordCourtDecision: (Sender.PROSECUTION,),
            RecordVictimParticipation: (Sender.LAW_ENFORCEMENT,),
        },
        consumers=(
            ConsumerSpec(
                "identifier-followups",
                (
                    event_type_filter(FollowUpScheduled),
                    event_type_filter(FollowUpRecorded),
                    event_type_filter(FollowUpOverdue),
                    event_type_filter(CaseClosed),
                    event_type_filter(CaseErased),
                ),
                "keeps the projection of follow-ups due, for the overdue sweep",
                side_work=True,
            ),
        ),
        writes=("case", "proceeding"),
        # A case closes only when none of its referrals is active, and a provider schedules
        # a follow-up only on a case it took on: its referrals are found through its needs.
        loads=("case", "referral", "need", "proceeding"),
        buckets=(CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET, FOLLOWUPS_DUE_BUCKET),
        answers=(INTAKE_KEY_SUBJECT,),
        keys=(Key.KEK, Key.INTAKE, Key.BLIND_INDEX),
    ),
    Entry(
        "referral",
        commands={
            AcceptReferral: (Sender.PROVIDER,),
            DeclineReferral: (Sender.PROVIDER,),
            CompleteReferral: (Sender.PROVIDER,),
            DeliverService: (Sender.PROVIDER,),
            # The referrer, the case's owner or the coordinating body (the domain checks which).
            RevokeReferral: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            RequestCrossBorderReferral: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            # The case plan: the case's owner (an agency that may identify) or the
            # coordinating body; the domain checks it is this case's owner.
            AddNeed: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            RemoveNeed: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            ReferNeed: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            ReassignReferral: (Sender.COORDINATING_BODY,),
        },
        consumers=(
            ConsumerSpec(
                "referral-on-identification",
                # A presumed victim's urgent needs are referred at once (referral/domain.py
                # urgent_services); the rest when the case is identified.
                (event_type_filter(VictimIdentified), event_type_filter(VictimPresumed)),
                "turns an identification (or a presumption: urgent needs) into referrals",
            ),
            ConsumerSpec(
                "referral-on-placement",
                (f"{EVENT_PREFIX}.shelter.>",),
                "follows shelter admissions, waiting lists and discharges into the referrals",
            ),
            ConsumerSpec(
                "xb-outbox",
                (
                    event_type_filter(ReferralCrossBorderRequested),
                    event_type_filter(CaseReceivedFromAbroad),
                    event_type_filter(ReferralAccepted),
                    event_type_filter(ReferralDeclined),
                    event_type_filter(ReferralCompleted),
                    # A received case closed here: the origin hears `closed`.
                    event_type_filter(CaseClosed),
                    # After a transfer: consent changes and erasure at the origin become
                    # notices; the destination's acknowledgement of one goes back.
                    event_type_filter(ConsentWithdrawn),
                    event_type_filter(ConsentRecorded),
                    event_type_filter(CaseErased),
                    event_type_filter(ReferralCrossBorderNoticeSent),
                    event_type_filter(CaseNoticeFromAbroadApplied),
                ),
                "queues cross-border packages: referrals, notices of consent changes and "
                "erasure to partner hubs, and answers to them",
                max_ack_pending=1,
                side_work=True,
            ),
            ConsumerSpec(
                "referral-feed",
                # Oversight: the case plan (needs added, referred, unmet, removed) goes to the
                # coordinating body's and the case's agencies' feeds, and so do the case
                # events that ask an agency to act (transfers, overdue follow-ups, reviews).
                (
                    f"{EVENT_PREFIX}.referral.>",
                    f"{EVENT_PREFIX}.need.>",
                    *(event_type_filter(e) for e in CASE_EVENTS_FOR_FEED),
                ),
                "copies each referral and need event to the feeds of the agencies it is "
                "addressed to, and keeps the open-referral deadline projection for escalation",
                # Copies of one aggregate's events stay in order; so do a referral's entries.
                aggregates_side_by_side=True,
                side_work=True,
                # The deadline projection had a durable of its own on the same referral
                # events: one delivery and one ack per event fewer (docs/PERFORMANCE.md 34).
                takes_over=("referral-deadlines",),
            ),
            ConsumerSpec(
                "referral-on-need",
                (event_type_filter(NeedReferred),),
                "turns each order to refer a need into its referral request",
            ),
            ConsumerSpec(
                "referral-on-decline",
                (event_type_filter(ReferralDeclined),),
                "re-refers a declined need to the next provider, or records it unmet",
            ),
            ConsumerSpec(
                "referral-on-close",
                (event_type_filter(CaseClosed),),
                "revokes the referrals a closed case named",
            ),
        ),
        # Cross-border referrals (docs/CROSSBORDER.md): egress opens the minimal fields of a
        # case and re-seals them for the peer, ingress records the case received from abroad,
        # so the referral service holds case-key and case-event rights it would otherwise not
        # need. Moving those two steps into the identifier would narrow this again.
        writes=("referral", "case", "need"),  # need: the case plan
        loads=("referral", "case", "need"),
        buckets=(REFERRAL_DEADLINES_BUCKET, CASE_KEYS_BUCKET),
        publishes=(f"{FEED_PREFIX}.>",),
        cross_border=True,
        # Read when a cross-border package is sealed or opened, not at start.
        keys=(Key.KEK, Key.INTAKE),
    ),
    Entry(
        "shelter",
        commands={
            RegisterShelter: (Sender.SHELTER,),
            DischargeFromShelter: (Sender.SHELTER,),
        },
        consumers=(
            ConsumerSpec(
                "shelter-on-referral",
                (
                    event_type_filter(ReferralRequested),
                    event_type_filter(ReferralRevoked),
                    event_type_filter(ReferralDeclined),
                ),
                "places shelter referrals and drops revoked or declined ones from waiting lists",
            ),
        ),
        writes=("shelter",),
        loads=("shelter", "referral"),
    ),
    Entry(
        "audit",
        consumers=(
            AuditConsumerSpec(
                "audit-all", EVENTS_STREAM, f"{EVENT_PREFIX}.>", "records every event"
            ),
            AuditConsumerSpec(
                "audit-rejections",
                REJECTIONS_STREAM,
                f"{REJECTIONS_PREFIX}.>",
                "records every rejected command",
            ),
        ),
        answers=(CHECKPOINT_REQUEST,),
        publishes=(
            f"{AUDIT_PREFIX}.>",
            CHECKPOINT_SUBJECT,
            *(f"{JS}.STREAM.INFO.{s}" for s in (AUDIT_STREAM, CHECKPOINTS_STREAM)),
            f"{JS}.STREAM.INFO.{REJECTIONS_STREAM}",
            *(f"{JS}.STREAM.MSG.GET.{s}" for s in (AUDIT_STREAM, CHECKPOINTS_STREAM)),
            *(f"{JS}.DIRECT.GET.{s}.>" for s in (AUDIT_STREAM, CHECKPOINTS_STREAM)),
            f"{JS}.DIRECT.GET.{AUDIT_STREAM}",  # catching up on its own log, in batches
        ),
        keys=(Key.AUDIT_SIGNING,),
    ),
    Entry(
        "custody",
        commands={
            # Only the coordinating body registers agency keys: an agency that could register
            # its own could as well register one in another agency's name.
            RegisterAgencyKey: (Sender.COORDINATING_BODY,),
            # Any agency may ask for personal data (custody decides, and records the refusal).
            RequestAccess: (Sender.ANY,),
            # Victim-status attestations (docs/ATTESTATION.md): the case owner (always an
            # agency that may identify) or the coordinating body; the domain checks which case.
            IssueAttestation: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            RevokeAttestation: (Sender.IDENTIFYING, Sender.COORDINATING_BODY),
            # Any agency may check one online; the check is recorded (attestation.checked).
            CheckAttestation: (Sender.ANY,),
        },
        consumers=(
            ConsumerSpec(
                "custody-on-erasure",
                (event_type_filter(CaseErased),),
                "revokes an erased case's attestations, shreds its data key and drops it "
                "from the blind index",
            ),
            ConsumerSpec(
                "custody-on-decision",
                (event_type_filter(VictimNotIdentified),),
                "revokes a presumed victim's attestations when the case is decided not identified",
            ),
        ),
        writes=("access", "agency", "attestation", "attestation_check"),
        loads=("access", "agency", "case", "referral", "need", "attestation", "attestation_check"),
        buckets=(CASE_KEYS_BUCKET, BLIND_INDEX_BUCKET),
        answers=(ATTESTATION_KEY_SUBJECT, ATTESTATION_STATUS_SUBJECT),
        # The KEK opens a case's document number for the attestation's binding.
        keys=(Key.KEK, Key.ATTESTATION_SIGNING),
    ),
)

SERVICES: tuple[str, ...] = tuple(entry.name for entry in TABLE)


def entry(name: str) -> Entry:
    found = [e for e in TABLE if e.name == name]
    if not found:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    return found[0]


def owner(command: type[Command]) -> Entry:
    """The one service that answers `command`."""
    return next(e for e in TABLE if command in e.commands)


def command_owners() -> dict[type[Command], str]:
    return {command: e.name for e in TABLE for command in e.commands}


def senders(command: type[Command]) -> tuple[Sender, ...]:
    return owner(command).commands[command]


def may_send(agency: Agency, registry: AgencyRegistry) -> tuple[type[Command], ...]:
    """The commands an agency's roles allow it to send, in table order."""
    return tuple(
        command
        for e in TABLE
        for command, roles in e.commands.items()
        if any(role.admits(agency, registry) for role in roles)
    )


@dataclass(frozen=True)
class Durable:
    """Any durable consumer the bootstrap creates: where it reads and which service owns it."""

    stream: str
    durable: str
    service: str


def every_durable() -> tuple[Durable, ...]:
    """Every service's durables on the hub's own streams (not the per-peer link ones)."""
    return tuple(Durable(c.stream, c.durable, e.name) for e in TABLE for c in e.consumers)


def consumer(durable: str) -> ConsumerSpec:
    """An event-stream consumer of the table, by name: what a service's `register` takes."""
    specs = (c for e in TABLE for c in e.consumers if isinstance(c, ConsumerSpec))
    return next(spec for spec in specs if spec.durable == durable)


def audit_consumers() -> tuple[AuditConsumerSpec, ...]:
    return tuple(c for c in entry("audit").consumers if isinstance(c, AuditConsumerSpec))


def takeovers() -> tuple[Takeover, ...]:
    """The durables that replaced others (`ConsumerSpec.takes_over`), for bootstrap."""
    return tuple(
        Takeover(c.stream, c.durable, c.takes_over)
        for e in TABLE
        for c in e.consumers
        if isinstance(c, ConsumerSpec) and c.takes_over
    )


def consumer_configs(settings: Settings, peers: Iterable[str]) -> list[tuple[str, ConsumerConfig]]:
    """Every durable bootstrap creates, with the stream it is on: the table's, and the
    link's (a relay per peer and ingress) when a service runs the cross-border link."""
    configs = [(c.stream, c.config(settings)) for e in TABLE for c in e.consumers]
    if any(e.cross_border for e in TABLE):
        configs += xb_consumer_configs(list(peers))
    return configs

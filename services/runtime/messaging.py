"""How a service meets NATS: command request/reply and durable event consumers, on FastStream.

Commands: the raw body is parsed here into the typed command, so every bad input becomes a
`command.rejected` reply naming the field and the reason, and nothing is written.

Durable consumers, of every service, of the audit writer and of the cross-border link, run
in one loop, `consume` (docs/ARCHITECTURE.md, "Consumers, retries and dead letters"): ack
after the handler's effect, nak with the configured backoff when it failed, and after the
last allowed delivery write a dead letter (with the reason) to NRM_DLQ and terminate.
Redeliveries are harmless: handlers go through `AggregateWriter` (or the audit log's leaf
subject), which applies each cause at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal, Protocol, TypeVar, get_args, get_origin

from faststream.nats import NatsBroker, NatsMessage, NatsResponse
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from structlog.contextvars import bound_contextvars

from contracts.commands import ALL_COMMANDS, Command, ScreeningInterview
from contracts.envelope import CONTENT_TYPE, Envelope, EnvelopeAttributes, source_uri
from contracts.events import ALL_EVENTS, Event
from contracts.operations import (
    CommandRejectionNoted,
    DeadLetterRecorded,
    DeadLetterResolved,
    RedriveRequest,
    RejectedField,
)
from contracts.replies import (
    CommandAccepted,
    CommandRejected,
    CommandRejection,
    ErrorCode,
    FieldError,
)
from contracts.subjects import (
    EVENTS_STREAM,
    REJECTIONS_STREAM,
    command_subject,
    dlq_resolved_subject,
    dlq_subject,
    redrive_subject,
    rejection_subject,
    sender_of,
)
from contracts.vocabulary import CANONICAL_UUID, NIL_UUID
from services.agencies.registry import AgencyRegistry
from services.runtime.command_body import BodyError, read_json_object
from services.runtime.command_ledger import CommandLedger, fingerprint, handling
from services.runtime.connection import broker_options, flush_confirmed
from services.runtime.dead_letters import dead_letter
from services.runtime.eventstore import EventStore
from services.runtime.eventstore_jetstream import JetStreamEventStore
from services.runtime.health import (
    COMMANDS,
    DEAD_LETTERS,
    EVENTS,
    HANDLER_SECONDS,
    REJECTIONS_HELD_BACK,
)
from services.runtime.keyvalue import KeyValue
from services.runtime.keyvalue_jetstream import JetStreamKeyValue
from services.runtime.logging import get_logger
from services.runtime.loops import Lifetime, keep_running, stop_if_cancelled, stop_loops
from services.runtime.pulled import PulledMessages
from services.runtime.rejection_budget import RejectionBudget
from services.runtime.settings import Settings, nats_servers
from services.runtime.stored_messages import stored_event_of
from services.runtime.topology import COMMAND_IDS_BUCKET, ConsumerSpec
from services.runtime.writer import AggregateWriter, Clock, Outcome, utc_now

log = get_logger("nrm.messaging")
MAX_WAIT_SECONDS = 5.0
C = TypeVar("C", bound=Command)


@dataclass
class Runtime:
    """What a running service works with; filled in once connected."""

    settings: Settings
    registry: AgencyRegistry
    clock: Clock = utc_now
    nc: Client | None = None
    js: JetStreamContext | None = None
    store: EventStore | None = None
    # KV buckets by name: injected ones (tests: InMemoryKeyValue) are used as they are; any
    # other is opened on JetStream at first use and kept.
    buckets: dict[str, KeyValue] = field(default_factory=dict)
    # Set when the service is asked to stop: its loops end then, and are restarted before.
    lifetime: Lifetime = field(default_factory=Lifetime)

    def connected(self, nc: Client) -> None:
        """Connected: the JetStream event store, unless one was injected (tests)."""
        self.nc = nc
        self.js = nc.jetstream()
        if self.store is None:
            self.store = JetStreamEventStore(nc, self.js)

    def writer(self, service: str) -> AggregateWriter:
        assert self.store is not None, "not connected"
        return AggregateWriter(self.store, source_uri(self.settings.country, service), self.clock)

    async def bucket(self, name: str) -> KeyValue:
        """The KV bucket `name`. Kept only once opened: a missing bucket (never bootstrapped,
        or deleted) is asked for again next time, so a retry sees it once it is back."""
        if name not in self.buckets:
            self.buckets[name] = await JetStreamKeyValue.open(self.connection, name)
        return self.buckets[name]

    @property
    def jetstream(self) -> JetStreamContext:
        assert self.js is not None, "not connected"
        return self.js

    @property
    def connection(self) -> Client:
        assert self.nc is not None, "not connected"
        return self.nc


class Reply(Protocol):
    """A reply other than accepted/rejected (e.g. access.released): a model with a TYPE."""

    TYPE: ClassVar[str]

    @property
    def command_id(self) -> uuid.UUID | None: ...

    def model_dump(self, *, mode: Literal["json"]) -> dict[str, Any]: ...


CommandHandler = Callable[[Any], Awaitable[tuple[str, Outcome] | Reply]]
# How one command is served: admit it (parse once), fingerprint it, handle it.
Served = tuple[Callable[[Any], Any], Callable[[Any], str], CommandHandler]


@dataclass(frozen=True)
class Delivery:
    """One event as a consumer receives it: the exact stored bytes and where they are."""

    envelope: EnvelopeAttributes
    event: Event
    data: bytes
    stream_sequence: int
    # The durable's delivery count at this delivery (each redelivery is a new one); None when
    # the event came another way (`nrm dlq retry`). Two deliveries in a row to one process
    # that count up by one mean no other delivery of the durable came between them.
    consumer_sequence: int | None = None


EventHandler = Callable[[Delivery], Awaitable[None]]


OTHER = "(other)"


def _field_names(*models: type[BaseModel]) -> frozenset[str]:
    """Every field name of these models and of the models inside them, and the members of
    enums used as map keys (`capacity.women`): the only names a reported location may show."""
    names: set[str] = set()
    seen: set[int] = set()
    todo: list[Any] = list(models)
    while todo:
        tp = todo.pop()
        if id(tp) in seen:
            continue
        seen.add(id(tp))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            names.update(tp.model_fields)
            todo.extend(f.annotation for f in tp.model_fields.values())
            continue
        args = get_args(tp)
        if get_origin(tp) is dict and isinstance(args[0], type) and issubclass(args[0], Enum):
            names.update(str(member.value) for member in args[0])
        todo.extend(args)
    return frozenset(names)


CONTRACT_NAMES = _field_names(*ALL_COMMANDS, ScreeningInterview, *ALL_EVENTS, Envelope)


async def undecoded(msg: NatsMessage) -> NatsMessage:
    """The broker's decoder: the message as it came. FastStream's own runs json.loads on
    every body before the handler, and lets RecursionError and ValueError (a 4,300-digit
    integer) escape: no reply at all. The hub's subscribers read the bytes themselves
    (commands by `parse_command`)."""
    return msg


# Every subscriber of the hub is `async def on_x(msg: NatsMessage)` and is handed the message
# (`undecoded`) as it is: no dependency injection. FastStream runs a plain function given as a
# decoder, and the injection of a `NatsMessage` argument, in a worker thread: two thread hops
# of ~0.15 ms each for every command (docs/PERFORMANCE.md item 27).
BROKER_DECODING: dict[str, Any] = {"decoder": undecoded, "apply_types": False}


@dataclass(frozen=True)
class Received:
    """A request body read once, within command_body's limits: the JSON object, or why it
    is not one. Parsing, correlation and the rejection notice all take it from here."""

    data: dict[str, Any] | None
    problem: str | None = None

    @classmethod
    def of(cls, body: bytes | Received) -> Received:
        if isinstance(body, Received):
            return body
        try:
            return cls(read_json_object(body))
        except BodyError as exc:
            return cls(None, exc.reason)

    def text(self, key: str) -> str | None:
        value = self.data.get(key) if self.data is not None else None
        return value if isinstance(value, str) else None

    @property
    def command_id(self) -> uuid.UUID | None:
        """The body's command_id if it is a canonical UUID, for correlation; never raises."""
        value = self.text("command_id")
        if value is not None and CANONICAL_UUID.fullmatch(value) and value != NIL_UUID:
            return uuid.UUID(value)
        return None


def parse_command(command_type: type[C], body: bytes | Received) -> C:
    """The typed command in a request body, or a rejection that names each bad field.
    Rejections never quote the submitted values: they may be personal data."""
    received = Received.of(body)
    if received.data is None:
        raise CommandRejection(
            FieldError(field="", code=ErrorCode.INVALID_JSON, reason=received.problem or "")
        )
    try:
        return command_type.model_validate(received.data)
    except ValidationError as exc:
        raise CommandRejection(*validation_errors(exc)) from None


def validation_errors(exc: ValidationError) -> tuple[FieldError, ...]:
    """One error per problem, by location and a reason that never holds the input: a key the
    sender chose (not a contract field name) becomes "(other)", as do unknown map keys."""
    errors = []
    for err in exc.errors(include_input=False, include_url=False):
        parts: list[str] = []
        for part in err["loc"]:
            if part == "[key]":  # pydantic's tag for a bad map key: the key is already "(other)"
                continue
            name = str(part) if isinstance(part, int) or part in CONTRACT_NAMES else OTHER
            parts.append(name)
        errors.append(
            FieldError(field=".".join(parts), code=ErrorCode.INVALID_FIELD, reason=_reason(err))
        )
    return tuple(errors)


def _admitted(admit: Callable[[Any], Any], handle: CommandHandler) -> CommandHandler:
    async def handle_admitted(command: Any) -> tuple[str, Outcome] | Reply:
        return await handle(admit(command))

    return handle_admitted


def check_sender(command: Command, sender: str | None, *, authenticated: bool) -> None:
    """Who sent a command is the agency in its subject, which on a secured hub only that
    agency's NATS user may publish to; the body's `agency_id` must say the same. On a
    secured hub the open subject (no sender in it) is refused outright."""
    if sender is None and authenticated:
        raise CommandRejection(
            FieldError(
                field="",
                code=ErrorCode.NOT_AUTHORISED,
                reason="this hub takes commands only on the sending agency's own subject "
                "(nrm.cmd.<command>.<agency id>)",
            )
        )
    if sender is not None and command.agency_id != sender:
        raise CommandRejection(
            FieldError(
                field="agency_id",
                code=ErrorCode.NOT_AUTHORISED,
                reason="not the agency this connection is authenticated as",
            )
        )


def _reason(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    detail = err.get("ctx", {}).get("error")
    if isinstance(detail, str):
        # A parser's detail (uuid, date) may quote the input: "found `x` at 0".
        return err["msg"].split(",")[0]
    # Otherwise pydantic's message holds the constraint or the allowed values, not the input;
    # a value_error's is our own validators' fixed text.
    return err["msg"]


class ServiceHost:
    """One service process's FastStream broker with its command and event handlers."""

    def __init__(self, service: str, runtime: Runtime, nats_url: str) -> None:
        self.service = service
        self.runtime = runtime
        self.source = source_uri(runtime.settings.country, service)
        self.broker = NatsBroker(
            nats_servers(nats_url),
            logger=None,
            max_reconnect_attempts=-1,
            **BROKER_DECODING,  # every subscriber reads the bytes itself (see `undecoded`)
            **broker_options(runtime.settings, service),
        )
        self._consumers: list[ConsumerSpec] = []
        self._pulls: list[tuple[Pull, Handler]] = []
        self._loops: list[asyncio.Task[None]] = []
        self._buckets: list[str] = []
        self._budget = RejectionBudget()
        self._command_ledger: CommandLedger | None = None
        self.consuming = False
        # The handlers as registered, by durable (and by command type, `command_handlers`):
        # a test calls them directly (or `execute`) on a Runtime with in-memory ports.
        self.event_handlers: dict[str, EventHandler] = {}
        # Per command: admit (parse-once step), meaning (ledger fingerprint), handler.
        self._served: dict[type[Command], Served] = {}

    @property
    def command_handlers(self) -> dict[type[Command], CommandHandler]:
        """Each registered command's admit-then-handle, without the sender check and the
        ledger (`execute` has those): what a test calls without NATS."""
        return {kind: _admitted(admit, handle) for kind, (admit, _, handle) in self._served.items()}

    @property
    def ready(self) -> bool:
        """Readiness: connected to NATS and consuming."""
        nc = self.runtime.nc
        return self.consuming and nc is not None and nc.is_connected

    @property
    def pulls(self) -> tuple[Pull, ...]:
        """The durables this host's consumer loops take, and how."""
        return tuple(pull for pull, _ in self._pulls)

    async def start(self) -> None:
        """Connect, wait for the bootstrap's topology, then consume. NATS being down or not
        yet bootstrapped is waited out, not a crash: containers start in any order."""
        delay = 0.2
        while True:
            try:
                await self.broker.connect()
                break
            except (OSError, NatsError, TimeoutError) as exc:
                log.warning(
                    "nats.unavailable",
                    service=self.service,
                    error=type(exc).__name__,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_SECONDS)
        self.runtime.connected(self.broker.connection)
        await self._wait_for_topology()
        await self.broker.start()
        # Ready means the server has our subscriptions.
        await flush_confirmed(self.broker.connection)
        self._loops = [
            asyncio.create_task(
                keep_running(
                    self.runtime.lifetime,
                    self.service,
                    pull.durable,
                    functools.partial(consume, self.runtime, self.service, pull, take),
                )
            )
            for pull, take in self._pulls
        ]
        self.consuming = True

    async def _ledger(self) -> CommandLedger:
        if self._command_ledger is None:
            self._command_ledger = CommandLedger(await self.runtime.bucket(COMMAND_IDS_BUCKET))
        return self._command_ledger

    def needs_bucket(self, bucket: str) -> None:
        self._buckets.append(bucket)

    async def _wait_for_topology(self) -> None:
        # Binding to a missing durable would make nats-py create it with default settings
        # (unlimited redeliveries, no backoff): wait for the bootstrap instead.
        js = self.runtime.jetstream
        delay = 0.2
        while True:
            try:
                await js.stream_info(EVENTS_STREAM)
                for spec in self._consumers:
                    await js.consumer_info(EVENTS_STREAM, spec.durable)
                for bucket in self._buckets:
                    await js.key_value(bucket)
                return
            except (NotFoundError, BucketNotFoundError, NatsError, TimeoutError) as exc:
                log.warning(
                    "topology.missing",
                    service=self.service,
                    error=type(exc).__name__,
                    hint="run `nrm bootstrap`",
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_SECONDS)

    async def stop(self) -> None:
        self.consuming = False
        try:
            await stop_loops(self.runtime.lifetime, self._loops)
        finally:
            await self.broker.stop()

    def reply(
        self, reply: CommandAccepted | CommandRejected | Reply, subject: str | None
    ) -> NatsResponse:
        correlation = str(reply.command_id) if reply.command_id else None
        envelope = Envelope(
            id=str(uuid.uuid4()),
            source=self.source,
            type=reply.TYPE,
            time=self.runtime.clock(),
            subject=subject,
            correlationid=correlation,
            causationid=correlation,
            data=reply.model_dump(mode="json"),
        )
        return NatsResponse(envelope.to_bytes(), headers={"content-type": CONTENT_TYPE})

    def command(
        self,
        command_type: type[Command],
        handle: CommandHandler,
        meaning: Callable[[Any], str] = fingerprint,
        admit: Callable[[Any], Any] = lambda command: command,
    ) -> None:
        """Serve one command. `admit` turns the parsed command into what the handler works
        on, once (a screening: its personal data opened); `meaning` fingerprints that for
        the command-id ledger (services/runtime/command_ledger.py): the default hashes the
        whole body, which is wrong only where a retry legitimately re-encrypts part of it."""
        subject = command_subject(command_type)
        self._served[command_type] = (admit, meaning, handle)
        if COMMAND_IDS_BUCKET not in self._buckets:
            self.needs_bucket(COMMAND_IDS_BUCKET)

        async def on_command(msg: NatsMessage) -> NatsResponse:
            started = time.perf_counter()
            received = Received.of(msg.body)  # the one read of the body
            command_id = received.command_id
            with bound_contextvars(correlation_id=str(command_id) if command_id else None):
                response, outcome = await answer(msg, received)
            COMMANDS.labels(self.service, command_type.NAME, outcome).inc()
            HANDLER_SECONDS.labels(self.service, "command", command_type.NAME).observe(
                time.perf_counter() - started
            )
            return response

        async def answer(msg: NatsMessage, received: Received) -> tuple[NatsResponse, str]:
            sender = sender_of(command_type, msg.raw_message.subject)
            try:
                command = parse_command(command_type, received)
                result = await self.execute(command, sender)
            except CommandRejection as rejection:
                log.info(
                    "command.rejected",
                    command=command_type.NAME,
                    codes=[e.code.value for e in rejection.errors],
                )
                notice = rejection_notice(command_type, received, rejection, self.runtime.registry)
                await self._note_rejection(notice, sender, msg.raw_message.reply)
                rejected = CommandRejected(command_id=received.command_id, errors=rejection.errors)
                return self.reply(rejected, None), "rejected"
            except Exception as exc:  # the hub failed, not the sender: say so, keep serving
                log.error("command.failed", command=command_type.NAME, error=type(exc).__name__)
                unavailable = FieldError(
                    field="",
                    code=ErrorCode.UNAVAILABLE,
                    reason="the hub could not record the command; retry with the same command_id",
                )
                return self.reply(
                    CommandRejected(command_id=received.command_id, errors=(unavailable,)), None
                ), "failed"
            if not isinstance(result, tuple):  # accepted with more to say, released, denied
                status = str(getattr(result, "status", "answered"))
                log.info(f"command.{status}", command=command_type.NAME, reply=result.TYPE)
                return self.reply(result, getattr(result, "aggregate_id", None)), status
            aggregate_id, outcome = result
            accepted = CommandAccepted(
                command_id=command.command_id,
                aggregate_id=aggregate_id,
                event_ids=outcome.event_ids,
                duplicate=outcome.duplicate,
            )
            log.info(
                "command.accepted",
                command=command_type.NAME,
                aggregate_id=aggregate_id,
                events=len(outcome.event_ids),
                duplicate=outcome.duplicate,
            )
            return self.reply(accepted, aggregate_id), "accepted"

        for listened in (subject, f"{subject}.*"):  # open form; the sender's own subject
            self.broker.subscriber(
                listened,
                queue=f"{self.service}-commands",
                title=f"{listened}:{self.service}",
                description=command_type.__doc__,
            )(on_command)

    async def execute(
        self, command: Command, sender: str | None = None
    ) -> tuple[str, Outcome] | Reply:
        """A parsed command as its subscriber takes it: the sender checked, the command id
        claimed in the ledger, then handled; a `CommandRejection` otherwise. The reply and
        the rejection notice are the subscriber's (they need the broker)."""
        admit, meaning, handle = self._served[type(command)]
        check_sender(command, sender, authenticated=self.runtime.settings.authenticated)
        admitted = admit(command)  # once: the ledger and the handler share it
        first = await (await self._ledger()).claim(command.command_id, meaning(admitted))
        with handling(first):
            return await handle(admitted)

    def answer(
        self,
        subject: str,
        produce: Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]],
    ) -> None:
        """Serve a plain request (no command, nothing written), e.g. the intake public key;
        `produce` may be a coroutine function (the attestation status list reads events)."""

        async def on_request(msg: NatsMessage) -> NatsResponse:
            answer = produce()
            if inspect.isawaitable(answer):
                answer = await answer
            return NatsResponse(json.dumps(answer).encode())

        self.broker.subscriber(subject, queue=f"{self.service}-answers", title=subject)(on_request)

    async def _note_rejection(
        self, notice: CommandRejectionNoted, sender: str | None, reply: str
    ) -> None:
        """A durable notice for the audit log (NRM_REJECTIONS): never the submitted values.
        The actor is the agency the connection is authenticated as when the hub knows it;
        a notice whose sender the hub cannot name is stored within a rate budget."""
        registry = self.runtime.registry
        if sender is not None and registry.get(sender) is not None:
            named = notice.agency_id
            claimed = named if named not in (None, sender) and registry.get(named) else None
            notice = notice.model_copy(
                update={
                    "agency_id": sender,
                    "claimed_agency_id": claimed,
                    "authenticated": self.runtime.settings.authenticated,
                }
            )
        if not notice.authenticated:
            held_back = self._budget.spend(reply.rpartition(".")[0], time.monotonic())
            if held_back is None:
                REJECTIONS_HELD_BACK.labels(self.service).inc()
                return
            notice = notice.model_copy(update={"held_back": held_back})
        command = notice.command
        envelope = Envelope(
            id=str(uuid.uuid4()),
            source=self.source,
            type=CommandRejectionNoted.TYPE,
            time=self.runtime.clock(),
            data=notice.model_dump(mode="json"),
        )
        try:
            await self.runtime.jetstream.publish(
                rejection_subject(command), envelope.to_bytes(), stream=REJECTIONS_STREAM
            )
        except (NatsError, TimeoutError) as exc:
            log.error("command.rejection_not_noted", command=command, error=type(exc).__name__)

    def consume(self, spec: ConsumerSpec, handle: EventHandler) -> None:
        """Run `handle` on every event of the durable `spec` (in the one consumer loop, from
        `start` to `stop`), and answer `nrm dlq retry` for it."""
        settings = self.runtime.settings
        self._consumers.append(spec)
        self.event_handlers[spec.durable] = handle
        pull = Pull(
            EVENTS_STREAM,
            spec.durable,
            spec.fetch_batch,
            settings.retry_backoff_seconds,
            settings.max_deliver,
            spec.aggregates_side_by_side,
            SIDE_WORK_DELAY_SECONDS if spec.side_work else 0.0,
        )

        async def take(message: Taken) -> None:
            envelope, event = stored_event_of(message.data)
            with bound_contextvars(correlation_id=envelope.correlationid):
                await handle(
                    Delivery(
                        envelope,
                        event,
                        message.data,
                        message.stream_sequence,
                        message.consumer_sequence,
                    )
                )

        self._pulls.append((pull, take))
        self._redrive(spec, handle)

    def _redrive(self, spec: ConsumerSpec, handle: EventHandler) -> None:
        """Answer `nrm dlq retry`: apply one dead-lettered event again, after a fix. Safe to
        repeat: the handler goes through the writer, which applies each cause once. Dead
        letters of the durables this one took over (`takes_over`) are its to re-drive too."""
        names = (spec.durable, *spec.takes_over)

        async def on_redrive(msg: NatsMessage) -> NatsResponse:
            js = self.runtime.jetstream
            try:
                letter_id = RedriveRequest.model_validate_json(msg.body).dead_letter_id
            except ValidationError:
                return self.reply(
                    _rejected(
                        "dead_letter_id",
                        ErrorCode.INVALID_FIELD,
                        "give the dead letter's id (an integer)",
                    ),
                    None,
                )
            letter = await dead_letter(js, letter_id)
            if letter is None or letter.consumer not in names:
                return self.reply(
                    _rejected(
                        "dead_letter_id",
                        ErrorCode.UNKNOWN_ID,
                        f"no dead letter {letter_id} for {spec.durable}",
                    ),
                    None,
                )
            try:
                raw = await js.get_msg(EVENTS_STREAM, letter.stream_sequence)
                envelope, event = stored_event_of(raw.data or b"")
                await handle(Delivery(envelope, event, raw.data or b"", letter.stream_sequence))
            except Exception as exc:
                return self.reply(
                    _rejected("", ErrorCode.UNAVAILABLE, f"still failing: {describe_failure(exc)}"),
                    None,
                )
            marker = DeadLetterResolved(
                dead_letter_id=letter_id,
                consumer=letter.consumer,
                stream_sequence=letter.stream_sequence,
            )
            resolved = Envelope(
                id=str(uuid.uuid4()),
                source=self.source,
                type=DeadLetterResolved.TYPE,
                time=self.runtime.clock(),
                data=marker.model_dump(mode="json"),
            )
            await js.publish(
                dlq_resolved_subject(letter.consumer),
                resolved.to_bytes(),
                headers={"Nats-Msg-Id": f"resolved:{letter_id}"},
            )
            log.info("dead_letter.resolved", consumer=letter.consumer, dead_letter_id=letter_id)
            return NatsResponse(resolved.to_bytes(), headers={"content-type": CONTENT_TYPE})

        for name in names:
            self.broker.subscriber(
                redrive_subject(name), queue=f"{self.service}-redrive", title=f"redrive:{name}"
            )(on_redrive)


def _rejected(field: str, code: ErrorCode, reason: str) -> CommandRejected:
    return CommandRejected(errors=(FieldError(field=field, code=code, reason=reason),))


def rejection_notice(
    command_type: type[Command],
    body: bytes | Received,
    rejection: CommandRejection,
    registry: AgencyRegistry,
) -> CommandRejectionNoted:
    """Only what is safe to keep forever: the command's own field names (a key the sender
    invented may be personal data, so it becomes "(other)"), codes, and the agency id only if
    the registry lists it (any other text the sender chose is kept nowhere)."""
    received = Received.of(body)
    value = received.text("agency_id")
    agency = value if value is not None and registry.get(value) is not None else None
    known = set(command_type.model_fields) | {""}
    errors = tuple(
        RejectedField(field=top if (top := e.field.split(".")[0]) in known else OTHER, code=e.code)
        for e in rejection.errors
    )
    return CommandRejectionNoted(
        command=command_type.NAME,
        command_id=received.command_id,
        agency_id=agency,
        errors=errors,
    )


def describe_failure(exc: Exception) -> str:
    """A reason fit for logs and dead letters: validation errors by location only, so that
    no stored value (sealed or not) is copied into the reason."""
    if isinstance(exc, ValidationError):
        fields = ", ".join(e.field or "<body>" for e in validation_errors(exc))
        return f"{type(exc).__name__}: invalid {fields}"
    if isinstance(exc, ExceptionGroup):  # writes side by side (the referral plan): each
        return "; ".join(describe_failure(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


# --- the one consumer loop ------------------------------------------------------------------

FETCH_TIMEOUT_SECONDS = 1.0  # an idle pull waits this long; a stop interrupts it at once
# Side work (ConsumerSpec.side_work) waits this long after an event was stored before taking
# it. A case's next decision is delivered the moment its event is stored, and so are that
# event's feed copies, projection entries and outbox look; one event loop runs them in no
# order of urgency, so without the wait each step of a case waited for the side work of the
# last (docs/PERFORMANCE.md item 22). Longer than a decision takes, far shorter than anyone
# reading a feed would notice; a backlog (events older than this) is not held back at all.
SIDE_WORK_DELAY_SECONDS = 0.010


@dataclass(frozen=True)
class Pull:
    """A durable pull consumer as `consume` runs it. The consumer itself (filter, ack wait,
    max_ack_pending, max_deliver) is the bootstrap's (topology.py); this says how to take it."""

    stream: str
    durable: str
    batch: int  # at most the consumer's max_ack_pending (see ConsumerSpec.fetch_batch)
    backoff: tuple[float, ...] = (1.0,)  # nak delay by attempt; the last one repeats
    max_deliver: int | None = None  # the consumer's own; None: retried forever, never a letter
    aggregates_side_by_side: bool = False  # ConsumerSpec.aggregates_side_by_side
    after_stored: float = 0.0  # side work: SIDE_WORK_DELAY_SECONDS (see side_work_wait)

    def delay(self, attempt: int) -> float:
        return self.backoff[min(attempt - 1, len(self.backoff) - 1)]


class Taken:
    """One message as the consumer loop hands it to a handler: the exact stored bytes, where
    they are, and which delivery this is."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.data = msg.data
        self.headers: dict[str, str] = dict(msg.headers or {})
        self.stream_sequence: int = msg.metadata.sequence.stream
        self.consumer_sequence: int = msg.metadata.sequence.consumer
        self.attempt: int = msg.metadata.num_delivered
        self.stored_at: dt.datetime | None = msg.metadata.timestamp  # the server's clock

    async def still_working(self) -> None:
        """Still ours: a handler that waits long (the relay, for its peer) keeps the message
        from being redelivered meanwhile. Best effort; a lost one costs a redelivery."""
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await self._msg.in_progress()


Handler = Callable[[Taken], Awaitable[None]]
BatchHandler = Callable[[Sequence[Taken]], Awaitable[None]]


async def consume(
    runtime: Runtime, service: str, pull: Pull, handle: Handler, ahead: BatchHandler | None = None
) -> None:
    """The hub's one consumer loop, until cancelled: fetch up to `pull.batch` messages and
    take them one at a time, in order (side work, `pull.after_stored`, not before the newest
    is that old: `side_work_wait`). A message is acked only after `handle` returned (its
    effect is stored); when `handle` raises it is nak'ed with `pull.delay(attempt)`, and on
    the last delivery the consumer allows it gets a dead letter with the reason instead, and
    is terminated. NATS being away is waited out; a stop is honoured however nats-py reports
    it.

    `ahead`, when given, sees each fetched batch first, to do its work together (the audit
    writer publishes the batch's leaves pipelined). It is an optimisation only: every
    message is still taken by `handle`, which must find done what `ahead` did and do what it
    did not; `ahead` fails nothing."""
    pulled = PulledMessages(runtime.connection, pull.stream, pull.durable)
    await pulled.open()
    try:
        while True:
            try:
                batch = await pulled.take(pull.batch, FETCH_TIMEOUT_SECONDS)
            except TimeoutError:  # nothing to take (or NATS away): ask again
                stop_if_cancelled()
                continue
            except (NatsError, OSError) as exc:
                stop_if_cancelled()
                log.warning(
                    "consumer.fetch_failed", consumer=pull.durable, error=type(exc).__name__
                )
                await asyncio.sleep(0.5)
                continue
            if pull.after_stored and batch:
                wait = side_work_wait(batch[-1].metadata.timestamp, time.time(), pull.after_stored)
                if wait:
                    await asyncio.sleep(wait)
            taken = [Taken(msg) for msg in batch]
            if ahead is not None:
                try:
                    await ahead(taken)
                except Exception as exc:  # each message is still taken, and retried if need be
                    stop_if_cancelled()
                    log.warning(
                        "consumer.ahead_failed", consumer=pull.durable, error=type(exc).__name__
                    )
            if pull.aggregates_side_by_side:
                await _take_in_lanes(runtime, service, pull, handle, taken)
                continue
            for one in taken:
                await _take(runtime, service, pull, handle, one)
    finally:
        # Left subscribed, the connection's drain on stop would wait for it.
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await pulled.close()


def side_work_wait(stored_at: dt.datetime | None, now: float, delay: float) -> float:
    """How long side work waits before a batch whose newest event was stored at `stored_at`
    (the server's clock; `now` is ours): until `delay` after it, never longer than `delay`
    (a server clock ahead of ours), and not at all for events already that old."""
    if stored_at is None:
        return 0.0
    return min(delay, max(0.0, stored_at.timestamp() + delay - now))


def aggregate_of(subject: str) -> str:
    """`nrm.evt.<aggregate>.<id>.<type>` -> `<aggregate>.<id>`: the lane an event takes."""
    return ".".join(subject.split(".", 4)[2:4])


async def _take_in_lanes(
    runtime: Runtime, service: str, pull: Pull, handle: Handler, batch: list[Taken]
) -> None:
    """A batch as lanes, one per aggregate: each lane's events one at a time in stream order,
    the lanes side by side, so one event's round trips no longer wait for another
    aggregate's. The batch is done when every lane is."""
    lanes: dict[str, list[Taken]] = {}
    for taken in batch:
        lanes.setdefault(aggregate_of(taken.subject), []).append(taken)

    async def lane(messages: list[Taken]) -> None:
        for taken in messages:
            await _take(runtime, service, pull, handle, taken)

    await asyncio.gather(*(lane(messages) for messages in lanes.values()))


async def _take(runtime: Runtime, service: str, pull: Pull, handle: Handler, taken: Taken) -> None:
    started = time.perf_counter()
    msg = taken._msg  # the loop's own, to ack or nak
    try:
        await handle(taken)
    except Exception as exc:
        stop_if_cancelled()  # a stop that nats-py reported as a closed connection
        outcome = await _retry_or_dead_letter(runtime, service, pull, msg, taken, exc)
    else:
        await _ack(pull, msg)
        outcome = "handled"
    EVENTS.labels(service, pull.durable, outcome).inc()
    HANDLER_SECONDS.labels(service, "event", pull.durable).observe(time.perf_counter() - started)


async def _ack(pull: Pull, msg: Msg) -> None:
    if pull.batch > 1:
        # Others are in flight meanwhile: a lost ack only means a (harmless) redelivery.
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await msg.ack()
        return
    # One at a time: until the server has the ack it hands out nothing else, so a lost one
    # would stall the consumer for its whole ack wait. Confirm it.
    while True:
        try:
            await msg.ack_sync(timeout=2.0)
            return
        except (NatsError, TimeoutError, OSError):
            stop_if_cancelled()
            await asyncio.sleep(0.5)


async def _retry_or_dead_letter(
    runtime: Runtime, service: str, pull: Pull, msg: Msg, taken: Taken, exc: Exception
) -> str:
    reason = describe_failure(exc)
    if pull.max_deliver is not None and taken.attempt >= pull.max_deliver:
        try:
            await _dead_letter(runtime, service, pull, taken, reason)
        except (NatsError, TimeoutError, OSError) as failed:
            # Not terminated: the server's MAX_DELIVERIES advisory (in NRM_DLQ) records it.
            log.error(
                "event.dead_letter_failed", consumer=pull.durable, error=type(failed).__name__
            )
            return "dead_lettered"
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await msg.term()
        return "dead_lettered"
    delay = pull.delay(taken.attempt)
    log.warning(
        "event.retry", consumer=pull.durable, attempt=taken.attempt, delay=delay, error=reason
    )
    with contextlib.suppress(NatsError, TimeoutError, OSError):  # else back after ack wait
        await msg.nak(delay=delay)
    return "retried"


async def _dead_letter(
    runtime: Runtime, service: str, pull: Pull, taken: Taken, reason: str
) -> None:
    letter = DeadLetterRecorded(
        consumer=pull.durable,
        stream=pull.stream,
        stream_sequence=taken.stream_sequence,
        subject=taken.subject,
        attempts=taken.attempt,
        reason=reason,
    )
    envelope = Envelope(
        id=str(uuid.uuid4()),
        source=source_uri(runtime.settings.country, service),
        type=DeadLetterRecorded.TYPE,
        time=runtime.clock(),
        data=letter.model_dump(mode="json"),
    )
    dedup = f"{pull.durable}:{taken.stream_sequence}"
    await runtime.jetstream.publish(
        dlq_subject(pull.durable), envelope.to_bytes(), headers={"Nats-Msg-Id": dedup}
    )
    DEAD_LETTERS.labels(service, pull.durable).inc()
    log.error(
        "event.dead_lettered",
        consumer=pull.durable,
        stream_sequence=taken.stream_sequence,
        error=reason,
    )

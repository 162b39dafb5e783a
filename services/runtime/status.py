"""`nrm status`: what a running hub is doing, read from NATS alone.

- services: every instance that answers `nrm.ctl.ping` within a short window;
- consumer lag: for each durable, events not yet delivered plus delivered but unacknowledged;
- dead letters: unresolved ones per consumer (services/runtime/dead_letters.py);
- last audit entry: NRM_AUDIT's last sequence, time and subject;
- last signed checkpoint: the tree size it signs and when it was stored (a checkpoint far
  behind the last entry, or old, means the audit service is not signing).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from contracts.subjects import (
    AUDIT_STREAM,
    CHECKPOINT_SUBJECT,
    CHECKPOINTS_STREAM,
    PING_SUBJECT,
)
from services.runtime.dead_letters import dead_letters
from services.runtime.service_table import every_durable

PING_WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class Instance:
    service: str
    instance: str
    ready: bool


@dataclass(frozen=True)
class ConsumerLag:
    consumer: str
    service: str
    pending: int | None  # None: the durable does not exist (not bootstrapped)
    ack_pending: int | None

    @property
    def lag(self) -> int | None:
        if self.pending is None or self.ack_pending is None:
            return None
        return self.pending + self.ack_pending


@dataclass(frozen=True)
class AuditMark:
    sequence: int
    time: str | None
    subject: str | None


@dataclass(frozen=True)
class CheckpointMark:
    size: int
    time: str | None


@dataclass
class HubStatus:
    instances: list[Instance] = field(default_factory=list)
    consumers: list[ConsumerLag] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    last_audit: AuditMark | None = None
    last_checkpoint: CheckpointMark | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "instances": [asdict(i) for i in self.instances],
            "consumers": [{**asdict(c), "lag": c.lag} for c in self.consumers],
            "dead_letters": self.dead_letters,
            "last_audit": asdict(self.last_audit) if self.last_audit else None,
            "last_checkpoint": asdict(self.last_checkpoint) if self.last_checkpoint else None,
        }

    def render(self) -> str:
        lines = ["SERVICES"]
        seen = {i.service for i in self.instances}
        for service in sorted({c.service for c in every_durable()} | seen):
            mine = [i for i in self.instances if i.service == service]
            if not mine:
                lines.append(f"  {service:<12} not running")
            for i in mine:
                lines.append(
                    f"  {service:<12} {i.instance:<28} {'ready' if i.ready else 'NOT READY'}"
                )
        lines.append("CONSUMERS                       LAG  DEAD LETTERS")
        for c in self.consumers:
            lag = "missing" if c.lag is None else str(c.lag)
            lines.append(f"  {c.consumer:<28} {lag:>5}  {self.dead_letters.get(c.consumer, 0)}")
        mark = self.last_audit
        lines.append(
            "LAST AUDIT ENTRY  "
            + (f"#{mark.sequence} at {mark.time} ({mark.subject})" if mark else "none")
        )
        signed = self.last_checkpoint
        lines.append(
            "LAST CHECKPOINT   "
            + (f"size {signed.size} stored at {signed.time}" if signed else "none")
        )
        return "\n".join(lines)


async def ping(nc: Client, window: float = PING_WINDOW_SECONDS) -> list[Instance]:
    """Every instance that answers within `window` (no queue group: all of them answer)."""
    found: list[Instance] = []

    async def on_reply(msg: Msg) -> None:
        try:
            body = json.loads(msg.data)
            found.append(Instance(str(body["service"]), str(body["instance"]), body["ready"]))
        except (ValueError, KeyError, TypeError):
            return

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(PING_SUBJECT, b"", reply=inbox)
    await asyncio.sleep(window)
    await sub.unsubscribe()
    return sorted(found, key=lambda i: (i.service, i.instance))


async def hub_status(nc: Client) -> HubStatus:
    js = nc.jetstream()
    status = HubStatus(instances=await ping(nc))
    for spec in every_durable():
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
            pending, ack_pending = info.num_pending or 0, info.num_ack_pending or 0
        except NotFoundError:
            pending = ack_pending = None
        status.consumers.append(ConsumerLag(spec.durable, spec.service, pending, ack_pending))
    try:
        unresolved = [d for d in await dead_letters(js) if not d.resolved]
        status.dead_letters = dict(Counter(d.consumer for d in unresolved))
    except NotFoundError:
        status.dead_letters = {}
    try:
        state = (await js.stream_info(AUDIT_STREAM)).state
        if state.messages:
            last = await js.get_msg(AUDIT_STREAM, state.last_seq)
            status.last_audit = AuditMark(state.last_seq, _time_of(last.data), last.subject)
    except (NotFoundError, NatsError):
        status.last_audit = None
    try:
        note = await js.get_last_msg(CHECKPOINTS_STREAM, CHECKPOINT_SUBJECT)
        # A signed note: origin, tree size, root hash, then the signatures (C2SP).
        size = int((note.data or b"").split(b"\n")[1])
        stored = note.time.isoformat() if note.time else None
        status.last_checkpoint = CheckpointMark(size, stored)
    except (NotFoundError, NatsError, IndexError, ValueError):
        status.last_checkpoint = None
    return status


def _time_of(data: bytes | None) -> str | None:
    """An audit entry is a CloudEvent: its `time`, if it has one."""
    try:
        value = json.loads(data or b"{}").get("time")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None

"""Reading the dead-letter stream: what failed, where, why, and whether it was re-driven.

NRM_DLQ holds three kinds of message:
- `nrm.dlq.<consumer>`: a `dead_letter.recorded` CloudEvent written by the failing consumer,
  with the reason;
- `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.NRM_EVENTS.<consumer>`: the server's advisory,
  the backstop when a handler died on its last attempt before it could write the letter;
- `nrm.dlq.<consumer>.resolved`: a `dead_letter.resolved` marker after a successful re-drive.
A dead letter's id is its NRM_DLQ sequence number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.operations import DeadLetterRecorded, DeadLetterResolved
from contracts.subjects import DLQ_STREAM

ADVISORY_PREFIX = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    stream_sequence: int
    subject: str
    attempts: int
    reason: str
    from_advisory: bool = False
    resolved: bool = False


def _parse(seq: int, subject: str, data: bytes) -> DeadLetter | int | None:
    """A dead letter, the id a resolved marker points at, or None for anything else."""
    body: dict[str, Any] = json.loads(data)
    if subject.startswith(ADVISORY_PREFIX):
        return DeadLetter(
            id=seq,
            consumer=body["consumer"],
            stream_sequence=int(body["stream_seq"]),
            subject="",
            attempts=int(body["deliveries"]),
            reason="max deliveries reached before the handler recorded a reason",
            from_advisory=True,
        )
    if body.get("type") == DeadLetterResolved.TYPE:
        return DeadLetterResolved.model_validate(body["data"]).dead_letter_id
    if body.get("type") == DeadLetterRecorded.TYPE:
        letter = DeadLetterRecorded.model_validate(body["data"])
        return DeadLetter(
            id=seq,
            consumer=letter.consumer,
            stream_sequence=letter.stream_sequence,
            subject=letter.subject,
            attempts=letter.attempts,
            reason=letter.reason,
        )
    return None


async def dead_letters(js: JetStreamContext) -> list[DeadLetter]:
    """Every dead letter in id order. The server's advisory for a failure the handler also
    recorded is left out: it is the same failure, with less said."""
    info = await js.stream_info(DLQ_STREAM)
    letters: list[DeadLetter] = []
    resolved: set[int] = set()
    for seq in range(info.state.first_seq, info.state.last_seq + 1 if info.state.messages else 0):
        msg = await js.get_msg(DLQ_STREAM, seq)
        parsed = _parse(seq, msg.subject or "", msg.data or b"{}")
        if isinstance(parsed, DeadLetter):
            letters.append(parsed)
        elif isinstance(parsed, int):
            resolved.add(parsed)
    recorded = {(d.consumer, d.stream_sequence) for d in letters if not d.from_advisory}
    return [
        replace(d, resolved=d.id in resolved)
        for d in letters
        if not (d.from_advisory and (d.consumer, d.stream_sequence) in recorded)
    ]


async def dead_letter(js: JetStreamContext, letter_id: int) -> DeadLetter | None:
    """One dead letter by id: a single read, for re-driving (which needs no resolved flag,
    re-driving being harmless to repeat)."""
    try:
        msg = await js.get_msg(DLQ_STREAM, letter_id)
    except NotFoundError:
        return None
    parsed = _parse(letter_id, msg.subject or "", msg.data or b"{}")
    return parsed if isinstance(parsed, DeadLetter) else None

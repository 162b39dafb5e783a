"""One meaning per command id: the first body sent under a `command_id` is the only one the
hub will ever act on for it.

Retries are safe because a retried command is recognised by its cause in the aggregate's
history; but that check is per aggregate, so a command id reused with another body, for
another command or another aggregate, would otherwise be "accepted, duplicate" and do
nothing, or do something new. The ledger (KV bucket `nrm-command-ids`) keeps a fingerprint of
each command id's first body, claimed atomically before anything is written: the same
fingerprint again is a retry, another one is a `conflict`, and nothing is done for it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

from contracts.commands import Command
from contracts.replies import ErrorCode, reject
from services.runtime.keyvalue import KeyNotFound, KeyValue, WrongRevision

# Set by the command subscriber around its handler: whether the ledger's claim of the
# command id was the first. A handler that answers retries from the record (a screening)
# needs no read to know that a first use has no record yet.
_FIRST_USE: contextvars.ContextVar[bool] = contextvars.ContextVar("first_use", default=False)


def first_use() -> bool:
    """True only inside a command's handler, when its command id was claimed just now; False
    for a retry, and outside a command (so that a caller who cannot know reads)."""
    return _FIRST_USE.get()


@contextlib.contextmanager
def handling(first: bool) -> Iterator[None]:
    """The block is a command's handler; `first`: its command id was claimed just now."""
    token = _FIRST_USE.set(first)
    try:
        yield
    finally:
        _FIRST_USE.reset(token)


def _canonical(value: Any) -> Any:
    """Key order and the order of list items do not change a command's meaning here: sets
    serialise in any order (hash seeds differ between processes)."""
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_canonical(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value


def fingerprint(command: Command, *, exclude: frozenset[str] = frozenset()) -> str:
    """SHA-256 of the command's name and its canonical JSON (less `exclude`)."""
    body = _canonical(command.model_dump(mode="json", exclude=set(exclude)))
    text = json.dumps([command.NAME, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class CommandLedger:
    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    async def claim(self, command_id: uuid.UUID, print_: str) -> bool:
        """Record `print_` as `command_id`'s meaning, or check it is the one recorded; a
        different one raises a `conflict` rejection. True when this was the first claim:
        nothing can have been written for the command before it (see `first_use`)."""
        key = str(command_id)
        while True:
            try:
                await self._bucket.create(key, print_.encode())
                return True
            except WrongRevision:
                pass  # claimed before: compare
            try:
                entry = await self._bucket.get(key)
            except KeyNotFound:
                continue  # vanished in between (cannot happen without admin rights): retry
            if entry.value.decode() == print_:
                return False
            raise reject(
                "command_id",
                ErrorCode.CONFLICT,
                "this command_id was already used for a different command; "
                "a retry must resend the same command, a new command needs a new command_id",
            )

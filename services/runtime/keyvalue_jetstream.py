"""The key-value port on a NATS JetStream KV bucket (nats-py): nats-py's errors become the
port's, so the services catch one set of errors whichever adapter they run on.

Single keys go through nats-py's bucket. Listings (`keys`, `entries`) read the bucket's
stream with the hub's replay reader instead of nats-py's `keys()`/`watchall()`. Those decide
that the listing is complete from a consumer info asked *after* the watch began, and from
the messages the client has read so far: when the server had already sent every entry but
the info reply overtook them, the watcher ended before the first entry and a bucket with
keys listed none (seen in CI, and once in a run of ~800 calls on an idle server). They also
left their consumer on the server for five minutes after each call: about a thousand
listings and the server refused new consumers. The replay reader ends on the server's own
counts (its delivered sequence, each message's pending count) and deletes its consumer
when done (docs/PERFORMANCE.md item 33)."""

from __future__ import annotations

from nats.aio.client import Client
from nats.js import errors
from nats.js import kv as nats_kv

from services.runtime.keyvalue import Entry, KeyNotFound, WrongRevision, checked_key
from services.runtime.stored_messages import replay_messages

# A delete or purge marker has one of these headers (the second: servers >= 2.11 marking a
# limit's removal); a value has neither.
_MARKERS = ("KV-Operation", "Nats-Marker-Reason")
# JetStream's "wrong last sequence" (JSStreamWrongLastSequenceErrF, ...ConstantErr): a
# conditional write lost.
_WRONG_LAST_SEQUENCE = (10071, 10164)


class JetStreamKeyValue:
    def __init__(self, nc: Client, name: str, bucket: nats_kv.KeyValue) -> None:
        self._nc = nc
        self._name = name
        self._bucket = bucket

    @classmethod
    async def open(cls, nc: Client, name: str) -> JetStreamKeyValue:
        """The existing bucket `name` (nats-py's NotFoundError if there is none)."""
        return cls(nc, name, await nc.jetstream().key_value(name))

    async def get(self, key: str) -> Entry:
        try:
            entry = await self._bucket.get(key)  # a deleted or purged key: KeyNotFoundError too
        except errors.KeyNotFoundError:
            raise KeyNotFound(key) from None
        except errors.InvalidKeyError:
            raise ValueError("not a valid key") from None
        return Entry(key, entry.value or b"", entry.revision or 0)

    async def create(self, key: str, value: bytes) -> int:
        try:
            return await self._bucket.create(key, value)
        except errors.KeyWrongLastSequenceError:
            raise WrongRevision(key) from None
        except errors.InvalidKeyError:
            raise ValueError("not a valid key") from None

    async def update(self, key: str, value: bytes, last: int) -> int:
        if last < 1:  # nats-py reads 0 as "create"; the port's update needs a revision
            raise WrongRevision(key)
        try:
            return await self._bucket.update(key, value, last=last)
        except errors.KeyWrongLastSequenceError:
            raise WrongRevision(key) from None
        except errors.InvalidKeyError:
            raise ValueError("not a valid key") from None

    async def put(self, key: str, value: bytes) -> int:
        try:
            return await self._bucket.put(key, value)
        except errors.InvalidKeyError:
            raise ValueError("not a valid key") from None

    async def delete(self, key: str, last: int | None = None) -> None:
        if last is not None and last < 1:  # nats-py would read 0 as "unconditionally"
            raise WrongRevision(key)
        try:
            await self._bucket.delete(key, last=last)
        except errors.InvalidKeyError:
            raise ValueError("not a valid key") from None
        except errors.BadRequestError as exc:
            # nats-py maps this code for create and update, not for delete.
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                raise WrongRevision(key) from None
            raise

    async def purge(self, key: str) -> None:
        await self._bucket.purge(key)

    async def keys(self, under: str | None = None) -> list[str]:
        group = "" if under is None else f"{checked_key(under)}."
        return [entry.key for entry in await self._latest(f"{group}>")]

    async def entries(self) -> list[Entry]:
        return await self._latest(">")

    async def _latest(self, keys: str) -> list[Entry]:
        """The latest value of each key matching `keys` (a subject filter's tail) that has
        one. History 1 (bootstrap): the stream holds each key's latest write, a value or a
        delete/purge marker. Folded by key in stream order, so a longer history also ends
        on each key's latest."""
        prefix = f"$KV.{self._name}."
        latest: dict[str, Entry | None] = {}
        async for message in replay_messages(self._nc, f"KV_{self._name}", prefix + keys):
            key = message.subject.removeprefix(prefix)
            marker = any(header in message.headers for header in _MARKERS)
            latest[key] = None if marker else Entry(key, message.data, message.sequence)
        return [entry for entry in latest.values() if entry is not None]

"""The key-value port on a NATS JetStream KV bucket (nats-py): nats-py's errors become the
port's, so the services catch one set of errors whichever adapter they run on."""

from __future__ import annotations

from nats.js import errors
from nats.js import kv as nats_kv

from services.runtime.keyvalue import Entry, KeyNotFound, WrongRevision


class JetStreamKeyValue:
    def __init__(self, bucket: nats_kv.KeyValue) -> None:
        self._bucket = bucket

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

    async def delete(self, key: str) -> None:
        try:
            await self._bucket.delete(key)
        except errors.InvalidKeyError:
            raise ValueError("not a valid key") from None

    async def purge(self, key: str) -> None:
        await self._bucket.purge(key)

    async def keys(self) -> list[str]:
        try:
            return list(await self._bucket.keys())
        except errors.NoKeysError:
            return []

    async def entries(self) -> list[Entry]:
        # One ordered consumer over the bucket's latest values; the watcher's None marks the
        # end of what is stored now.
        watcher = await self._bucket.watchall(ignore_deletes=True)
        try:
            found = []
            async for entry in watcher:
                if entry is None:
                    break
                found.append(Entry(entry.key, entry.value or b"", entry.revision or 0))
            return found
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

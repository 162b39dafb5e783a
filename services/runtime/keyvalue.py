"""The key-value port: what the hub's services use of a NATS KV bucket, with no NATS in it.

Adapters: `JetStreamKeyValue` (keyvalue_jetstream.py, the product: a nats-py bucket) and
`InMemoryKeyValue` (in_memory.py, for handler tests without a server). One contract suite
(tests/integration/test_key_value_contract.py) holds both to the same semantics:

- Every write returns the key's new revision; revisions increase across the whole bucket.
- `create` writes only if the key has no value (never written, deleted or purged), else
  `WrongRevision`; `update` writes only if the key's latest revision is `last`, else
  `WrongRevision`: compare-and-set, so two writers never both win.
- `get` of a key that has no value (never written, deleted or purged) raises `KeyNotFound`.
- `keys()` lists the keys that have a value, and is empty (not an error) when none has;
  `keys(under=g)` only those of the group `g` (keys `g.<rest>`), read without the rest of
  the bucket (a case's follow-ups, when it closes, not every case's); `entries()` gives
  each key with its latest value and revision, in one pass (a sweep over thousands of keys
  reads the bucket once, not once per key).
- A key is letters, digits and `-/_=.` (NATS subject tokens); anything else is a ValueError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

_VALID_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")  # nats-py's rule: subject tokens, no end dots


def checked_key(key: str) -> str:
    """`key` if it is a valid key (or group of keys), else ValueError."""
    if not _VALID_KEY.fullmatch(key) or key.startswith(".") or key.endswith("."):
        raise ValueError("not a valid key")
    return key


class KeyNotFound(Exception):
    """The key has no value: never written, deleted or purged."""


class WrongRevision(Exception):
    """A conditional write lost: the key exists (create) or moved on (update, delete)."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    revision: int


class KeyValue(Protocol):
    async def get(self, key: str) -> Entry:
        """The key's latest value and its revision; `KeyNotFound` if it has none."""
        ...

    async def create(self, key: str, value: bytes) -> int:
        """Write if the key has no value; `WrongRevision` if it has one."""
        ...

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write if the key's latest revision is still `last`; else `WrongRevision`."""
        ...

    async def put(self, key: str, value: bytes) -> int:
        """Write unconditionally."""
        ...

    async def delete(self, key: str, last: int | None = None) -> None:
        """Remove the value (NATS keeps a delete marker; history may remain). With `last`,
        only if the key's latest revision is still `last`; else `WrongRevision`: a sweep
        drops what it read, never a value written since."""
        ...

    async def purge(self, key: str) -> None:
        """Remove the value and every earlier revision of it (crypto-shredding relies on it)."""
        ...

    async def keys(self, under: str | None = None) -> list[str]:
        """The keys that have a value, empty when none has; with `under`, only the keys
        `under.<rest>` (ValueError if `under` is not a valid key)."""
        ...

    async def entries(self) -> list[Entry]:
        """Every key that has a value, with its latest value and revision."""
        ...

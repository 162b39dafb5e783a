"""The audit log's state, pure: the compact range over the leaves written so far and the hash
of the last leaf (each leaf names its predecessor's hash). What the audit service keeps in
memory, O(log n); also what tests use to generate logs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from contracts.operations import AuditEntry
from services.audit.checkpoint import Checkpoint, Signer
from services.audit.domain import leaf_bytes
from services.audit.merkle import CompactRange, leaf_hash


@dataclass
class LogState:
    tree: CompactRange = field(default_factory=CompactRange)
    last_leaf_hash: bytes | None = None

    @property
    def size(self) -> int:
        return self.tree.size

    def leaf_for(self, entry: AuditEntry, service: str, now: dt.datetime) -> bytes:
        """The bytes of the next leaf (entry.index must be the current size)."""
        if entry.index != self.size:
            raise ValueError(f"the next leaf is {self.size}, not {entry.index}")
        return leaf_bytes(entry, self.last_leaf_hash, service, now)

    def appended(self, raw: bytes) -> None:
        """Record a leaf that is now stored at index `size`."""
        hashed = leaf_hash(raw)
        self.tree.append(hashed)
        self.last_leaf_hash = hashed

    def checkpoint(self, origin: str) -> Checkpoint:
        return Checkpoint(origin, self.size, self.tree.root())

    def signed_checkpoint(self, signer: Signer) -> bytes:
        return signer.sign(self.checkpoint(signer.name).text())

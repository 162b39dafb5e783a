"""Duplicate detection without names: a keyed blind index over normalised name and date of
birth (HMAC-SHA256 under the hub's blind-index key).

The index lives in the KV bucket `nrm-blind-index`, never in the immutable log, so erasure can
remove it: `idx.<hmac>` holds the case ids seen with that name and birth date, `case.<case id>`
points back to the index entry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import unicodedata

from services.runtime.keyvalue import KeyNotFound, KeyValue, WrongRevision


def normalised_name(full_name: str) -> str:
    """Case, accents, punctuation and word order do not matter: 'Aigul  ASANOVA' and
    'asanova, aigul' are the same name."""
    decomposed = unicodedata.normalize("NFKD", full_name.casefold())
    letters = "".join(
        ch if ch.isalnum() else " " for ch in decomposed if not unicodedata.combining(ch)
    )
    return " ".join(sorted(letters.split()))


def blind_index(secret: bytes, full_name: str, date_of_birth: dt.date) -> str:
    message = f"nrm-blind-index/1|{normalised_name(full_name)}|{date_of_birth.isoformat()}"
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


class BlindIndex:
    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    async def add(self, index: str, case_id: str) -> list[str]:
        """Record `case_id` under `index`; return every case id recorded there (incl. it).
        The entry and the case's pointer to it are written side by side (a crash between
        them is healed by the retry of the screening, as when they were one after the other)."""
        cases, _ = await asyncio.gather(
            self._add_to_entry(f"idx.{index}", case_id),
            self._bucket.put(f"case.{case_id}", index.encode()),
        )
        return cases

    async def _add_to_entry(self, key: str, case_id: str) -> list[str]:
        # Most people are screened once: creating the entry comes first (one round trip).
        cases: list[str] = []
        revision: int | None = None
        while True:
            if case_id in cases:
                return cases
            try:
                value = json.dumps([*cases, case_id]).encode()
                if revision is None:
                    await self._bucket.create(key, value)
                else:
                    await self._bucket.update(key, value, last=revision)
                return [*cases, case_id]
            except WrongRevision:
                pass  # screened before, or another screening of the same person just now
            try:
                entry = await self._bucket.get(key)
            except KeyNotFound:
                cases, revision = [], None  # gone in between: create again
                continue
            cases, revision = json.loads(entry.value or b"[]"), entry.revision

    async def remove_case(self, case_id: str) -> None:
        """Erasure: drop the case from its index entry and the pointer to it."""
        try:
            pointer = await self._bucket.get(f"case.{case_id}")
        except KeyNotFound:
            return
        key = f"idx.{pointer.value.decode()}"
        while True:
            try:
                entry = await self._bucket.get(key)
            except KeyNotFound:
                break
            cases = [c for c in json.loads(entry.value or b"[]") if c != case_id]
            try:
                if cases:
                    await self._bucket.update(key, json.dumps(cases).encode(), last=entry.revision)
                else:
                    await self._bucket.purge(key)
                break
            except WrongRevision:
                continue
        await self._bucket.purge(f"case.{case_id}")

"""How many rejection notices an unidentified sender may leave in the audit record.

Rejection notices go to a stream that can never be purged, so a sender the hub cannot name
(an open hub, an agency id not in the registry) could otherwise fill it at line rate. Each
sender key (the connection's reply inbox) and all of them together get a token bucket; a
notice over budget is not stored, but counted, and the count travels with the sender's next
stored notice, so the audit log still says how many were held back.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

EVERYONE = "*"


@dataclass
class _Bucket:
    tokens: float
    updated: float
    held_back: int = 0


class RejectionBudget:
    def __init__(
        self,
        per_second: float = 2.0,
        burst: int = 20,
        overall_per_second: float = 20.0,
        overall_burst: int = 200,
        max_senders: int = 4096,
    ) -> None:
        self._rates = {EVERYONE: (overall_per_second, overall_burst)}
        self._per_second = per_second
        self._burst = burst
        self._max_senders = max_senders
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, key: str, now: float) -> tuple[_Bucket, float, int]:
        rate, burst = self._rates.get(key, (self._per_second, self._burst))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(burst), now)
            while len(self._buckets) > self._max_senders:  # forget the least recent sender
                oldest = next(iter(self._buckets))
                if oldest == EVERYONE:
                    self._buckets.move_to_end(EVERYONE)
                    continue
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket, rate, burst

    def spend(self, sender: str, now: float) -> int | None:
        """None when this notice is over budget (it is counted); else how many of this
        sender's notices were held back since its last stored one (then reset)."""
        mine, _, _ = self._bucket(sender, now)
        everyone, _, _ = self._bucket(EVERYONE, now)
        if mine.tokens < 1 or everyone.tokens < 1:
            mine.held_back += 1
            return None
        mine.tokens -= 1
        everyone.tokens -= 1
        held_back, mine.held_back = mine.held_back, 0
        return held_back

"""The benchmark's peer: the `eventsourcing` library (pyeventsourcing) on SQLite with AES.

Issue 19 asks the hub to be ahead of an established Python event-sourcing library storing
comparable events in the same run. This measures that library doing the hub's per-event
core and nothing more: one aggregate per case, created and then updated, ~5.5 events per
case (5 and 6 alternately; the hub stores ~5.5), each event carrying three text fields.
Every event is one command, written the way the library's examples write it: get the
aggregate from the repository, trigger the event, save (one SQLite transaction, optimistic
concurrency on the aggregate's version). The repository keeps aggregates in the library's
cache and reads only newer events on each get, as the hub's event store keeps histories.
Storage is a SQLite file in the bench's temporary directory (WAL journal, the library's
default; `synchronous` NORMAL to match nats-server's default sync_interval, FULL to match
`always`); every stored event is encrypted with AES-256-GCM (the library's `cryptography`
cipher: the same AES-GCM implementation the hub seals its fields with).

What it does not do, and the hub does: no network, no messaging server, no consumers or
projections, no audit leaf, no validation of commands against a contract; one process,
one thread, one write at a time. It is the lighter job: the hub must beat it doing more.

The run checks its own work: the store holds exactly the events written, a case rebuilds
with all its events and fields, and the database file holds no plaintext field.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteFactory
from eventsourcing.utils import Environment, EnvType

from nrm_tools.bench.end_to_end import BenchFailure

CIPHER_TOPIC = "eventsourcing.cryptography:AESCipher"  # AES-GCM from `cryptography`
CIPHER_NAME = "AES-256-GCM"
KEY_BYTES = 32
# What the first event of a case carries (like the hub's three sealed personal fields);
# the check looks for it in the database file: it must only be stored encrypted.
CANARY_NAME = "Peer Canary-Surname"
NARRATIVE = "Recruited with a job offer abroad; documents withheld on arrival. " * 4
# SQLite's `synchronous` per hub sync setting: NORMAL in WAL mode writes the log without an
# fsync per commit (synced at checkpoints), like nats-server's default sync_interval; FULL
# (SQLite's and the library's default) fsyncs every commit, like `sync_interval: always`.
SYNCHRONOUS = {"default": "NORMAL", "always": "FULL"}
STEPS = ("consent.given", "referral.made", "referral.made", "shelter.admitted", "referral.made")


class _SynchronousPool(SQLiteConnectionPool):
    """The library's pool, with SQLite's `synchronous` set on every connection it opens."""

    def __init__(self, *, db_name: str, lock_timeout: int | None, synchronous: str) -> None:
        super().__init__(db_name=db_name, lock_timeout=lock_timeout)
        self.synchronous = synchronous

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection.cursor().execute(f"PRAGMA synchronous={self.synchronous};")
        return connection


class SQLiteSynchronousFactory(SQLiteFactory):
    """`eventsourcing.sqlite` with `synchronous` chosen by SQLITE_SYNCHRONOUS (NORMAL/FULL)."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        synchronous = self.env.get("SQLITE_SYNCHRONOUS", "FULL")
        if synchronous not in SYNCHRONOUS.values():
            raise ValueError("SQLITE_SYNCHRONOUS must be NORMAL or FULL")
        library_pool = self.datastore.pool
        self.datastore.pool = _SynchronousPool(
            db_name=library_pool.db_name,
            lock_timeout=library_pool.lock_timeout,
            synchronous=synchronous,
        )
        library_pool.close()  # it has opened no connection yet


class PeerCase(Aggregate):
    """A case: registered with three text fields, then one step at a time, three fields each."""

    def __init__(self, full_name: str, phone: str, narrative: str) -> None:
        self.full_name = full_name
        self.phone = phone
        self.narrative = narrative
        self.steps: list[str] = []

    @event("Stepped")
    def step(self, code: str, agency: str, reference: str) -> None:
        self.steps.append(code)


class PeerCases(Application[UUID]):
    """One command per event, as the library's examples write them: get, trigger, save."""

    def register(self, index: int) -> UUID:
        case = PeerCase(f"{CANARY_NAME} {index}", f"+996 555 {index:06d}", NARRATIVE)
        self.save(case)
        case_id: UUID = case.id
        return case_id

    def record_step(self, case_id: UUID, code: str, agency: str, reference: str) -> None:
        case: PeerCase = self.repository.get(case_id)
        case.step(code, agency, reference)
        self.save(case)


@dataclass(frozen=True)
class PeerRun:
    library: str
    synchronous: str
    cases: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    def figures(self) -> dict[str, Any]:
        return {
            "library": self.library,
            "cases": self.cases,
            "events": self.events,
            "seconds": round(self.seconds, 2),
            "events_per_s": round(self.events_per_second, 1),
            "storage": "SQLite file",
            "cipher": CIPHER_NAME,
            "sqlite_synchronous": self.synchronous,
        }


def events_for(case_index: int) -> int:
    """5 and 6 events alternately: 5.5 per case, as the hub's case flow stores."""
    return 5 + case_index % 2


def application(database: Path, synchronous: str) -> PeerCases:
    key = base64.b64encode(os.urandom(KEY_BYTES)).decode()
    return PeerCases(
        env={
            "PERSISTENCE_MODULE": f"{__name__}:{SQLiteSynchronousFactory.__name__}",
            "SQLITE_DBNAME": str(database),
            "SQLITE_SYNCHRONOUS": synchronous,
            "CIPHER_TOPIC": CIPHER_TOPIC,
            "CIPHER_KEY": key,
            "COMPRESSOR_TOPIC": "",  # the hub compresses nothing either
            # Like the hub's history cache (LRU of 4,096 aggregates, then reads only newer
            # events): the library's aggregate cache, fast-forwarded from the store on each
            # get (its default), and not deep-copied (the hub copies no kept history either).
            "AGGREGATE_CACHE_MAXSIZE": "4096",
            "AGGREGATE_CACHE_FASTFORWARD": "y",
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
        }
    )


def measure(directory: Path, cases: int, synchronous: str = "NORMAL") -> PeerRun:
    """Write `cases` cases (~5.5 events each) to a fresh SQLite file, timed; then check."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / f"peer-eventsourcing-{synchronous.lower()}.sqlite"
    app = application(database, synchronous)  # creates the tables: before the clock
    case_ids: list[UUID] = []
    events = 0
    started = time.perf_counter()
    for index in range(cases):
        case_id = app.register(index)
        for step in range(events_for(index) - 1):
            app.record_step(case_id, STEPS[step], f"agency-{index % 17:02d}", f"{case_id}-{step}")
        case_ids.append(case_id)
        events += events_for(index)
    seconds = time.perf_counter() - started
    _check(app, database, case_ids, events)
    app.close()
    return PeerRun(f"eventsourcing {version('eventsourcing')}", synchronous, cases, events, seconds)


def _check(app: PeerCases, database: Path, case_ids: list[UUID], events: int) -> None:
    stored = app.recorder.max_notification_id() or 0
    if stored != events:
        raise BenchFailure(f"peer: {stored} events stored, {events} written")
    last = len(case_ids) - 1
    if last >= 0:
        case: PeerCase = app.repository.get(case_ids[last])
        rebuilt = case.version == events_for(last) and case.full_name.startswith(CANARY_NAME)
        if not rebuilt or case.steps != list(STEPS[: case.version - 1]):
            raise BenchFailure("peer: a case does not rebuild with all its events")
    # The database and its write-ahead log: the canary must only be there encrypted.
    for path in database.parent.glob(f"{database.name}*"):
        if CANARY_NAME.encode() in path.read_bytes():
            raise BenchFailure("peer: a personal field is stored in plaintext")

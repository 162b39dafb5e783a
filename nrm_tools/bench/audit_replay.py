"""Audit and replay figures: offline bundle verification (leaves/s, peak memory), checkpoint
signing cost, and rebuilding the projections from the event stream (events/s)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client

from contracts.envelope import current_event_reader
from contracts.operations import AuditEntry
from contracts.subjects import EVENT_PREFIX, EVENTS_STREAM
from nrm_tools.bench.raw import ordered_replay
from services.audit import cli as audit_cli
from services.audit.bundle import LEAVES_FILE, BundleWriter, default_jobs, verify_bundle
from services.audit.checkpoint import Signer
from services.audit.domain import leaf_bytes, parse_leaf
from services.audit.log import LogState
from services.audit.replay import ReadEvents, collector_paused, project
from services.runtime.settings import Settings
from services.runtime.stored_messages import replay_batches
from services.statistics.reader import replay as stats_replay

CHECKPOINT_EVERY = 10_000  # leaves between signed checkpoints in synthetic bundles


class VerificationFailed(Exception):
    pass


@dataclass(frozen=True)
class Verification:
    leaves: int
    seconds: float
    peak_bytes: int  # traced Python allocations during a second, traced pass

    @property
    def leaves_per_second(self) -> float:
        return self.leaves / self.seconds


@dataclass(frozen=True)
class Replays:
    events: int
    projections: float  # events/s: read NRM_EVENTS, parse, fold, project (nrm audit replay)
    statistics: float  # events/s: the statistics projection (nrm stats)
    raw_ordered: float  # msg/s: an ordered consumer over the same stream, no parsing


def verify(directory: Path, expected_leaves: int, repeat: int = 3) -> Verification:
    """Verify a bundle as `nrm audit verify` does: in a fresh process (not this one, which
    holds the hub and its threads: no fork there, and its heap is not the verifier's), with
    `--jobs` at its default, every core. Timed inside that process (the interpreter's start
    is not counted, as for the synthetic bundles; starting the workers is); `repeat` times,
    each doing every check on every leaf and checkpoint, the fastest counting: other work on
    the machine only ever slows a run down. Then once more here under tracemalloc (one
    process, untimed) for the peak of Python allocations."""
    from nrm_tools.bench.audit_verify import measure  # it imports this module

    seconds = float("inf")
    for _ in range(repeat):
        run = measure(directory, default_jobs())
        seconds = min(seconds, run.seconds)
        if run.leaves != expected_leaves:
            raise VerificationFailed(f"bundle: {run.leaves} of {expected_leaves} leaves verified")
    tracemalloc.start()
    try:
        report = verify_bundle(directory)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if report.failure is not None or report.leaves != expected_leaves:
        raise VerificationFailed(
            f"bundle: {report.leaves} of {expected_leaves} leaves verified, {report.failure}"
        )
    return Verification(report.leaves, seconds, peak)


async def export_bundle(nc: Client, settings: Settings, out: Path) -> int:
    """`nrm audit export` of the live hub (its chatter kept out of the report)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        await audit_cli.export(nc, out, settings)
    with (out / LEAVES_FILE).open("rb") as handle:
        return sum(1 for _ in handle)


def synthetic_bundle(template: bytes, leaves: int, out: Path) -> None:
    """A bundle of `leaves` well-formed, hash-linked leaves shaped like `template` (a real
    leaf from the run), with a signed checkpoint every CHECKPOINT_EVERY leaves and at the end:
    to see how verification scales past what the hub run wrote."""
    entry = parse_leaf(template)
    signer = Signer("bench.nrm.kg/audit", _private_key())
    state = LogState()
    writer = BundleWriter(out)
    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    for index in range(leaves):
        shaped: AuditEntry = entry.model_copy(
            update={
                "index": index,
                "source": entry.source.model_copy(update={"sequence": index + 1}),
            }
        )
        raw = leaf_bytes(shaped, state.last_leaf_hash, "bench", now)
        writer.leaf(raw)
        state.appended(raw)
        if state.size % CHECKPOINT_EVERY == 0 or state.size == leaves:
            writer.checkpoint(state.size, state.signed_checkpoint(signer))
    writer.close([signer.verifier], signer.name)


def checkpoint_signing_us(template: bytes, rounds: int = 2000) -> float:
    """Microseconds to compute the root and sign one checkpoint note (Ed25519)."""
    signer = Signer("bench.nrm.kg/audit", _private_key())
    state = LogState()
    for _ in range(1000):
        state.appended(template)
    started = time.perf_counter()
    for _ in range(rounds):
        state.signed_checkpoint(signer)
    return (time.perf_counter() - started) / rounds * 1e6


async def replays(nc: Client, rounds: int = 3) -> Replays:
    """The projection replay, the statistics replay and the raw ordered read of the same
    stream, in turn, `rounds` times; each figure the fastest of its rounds (other work on
    the machine only ever slows a run down). Measured in turn, so that a ratio compares
    figures from the same minutes on a machine whose speed drifts by the minute."""
    current_event_reader()  # its one-time model build (~0.1 s) is start-up, not throughput
    projections = statistics = raw = 0.0
    events = 0
    for _ in range(rounds):
        events, projected = await _projections(nc)
        projections = max(projections, projected)
        stats = await stats_replay(nc)
        if stats.state.events_applied != events:
            raise VerificationFailed(
                f"statistics replay applied {stats.state.events_applied} of {events} events"
            )
        statistics = max(statistics, stats.events_per_second)
        total, raw_rate = await ordered_replay(nc.jetstream(), EVENTS_STREAM, f"{EVENT_PREFIX}.>")
        if total != events:
            raise VerificationFailed(f"ordered replay saw {total} of {events} events")
        raw = max(raw, raw_rate)
    return Replays(events, projections, statistics, raw)


async def _projections(nc: Client) -> tuple[int, float]:
    """(events, events/s) of rebuilding the projections as `nrm audit replay` reads, hashes,
    decodes and folds them (services/audit/cli.py)."""
    started = time.perf_counter()
    read = ReadEvents()
    with collector_paused():
        async for run in replay_batches(nc, EVENTS_STREAM):
            read.read(run)
        projected = project(read.histories)
    events = len(read.hashes)
    rate = events / (time.perf_counter() - started)
    if not projected.cases or read.unreadable:
        raise VerificationFailed(f"the replay rebuilt no case or skipped {read.unreadable} events")
    return events, rate


def _private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(os.urandom(32))

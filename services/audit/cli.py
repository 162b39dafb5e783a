"""`nrm audit ...`: what an auditor runs. Export talks to NATS; verify, prove and verify-proof
work offline on a bundle; replay and access read the live hub (access also reads a bundle).

Exit codes: 0 sound; 1 integrity failure (or, for replay, a difference); 2 unreadable input;
3 trust failure (unknown key or bad signature).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from contracts.events import Event
from contracts.subjects import (
    AUDIT_STREAM,
    CHECKPOINT_REQUEST,
    CHECKPOINTS_STREAM,
    EVENTS_STREAM,
)
from services.audit.bundle import (
    EVENTS_FILE,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_UNREADABLE,
    LEAVES_FILE,
    BundleUnreadable,
    BundleWriter,
    build_inclusion_proof,
    default_jobs,
    read_keys,
    verify_bundle,
    verify_inclusion_proof,
)
from services.audit.checkpoint import VerifierKey, load_signer
from services.audit.domain import LeafError, parse_leaf
from services.audit.replay import (
    Key,
    Projections,
    ReadEvents,
    collector_paused,
    differences,
    project,
)
from services.audit.service import VERIFIER_KEY_HEADER, origin_for
from services.audit.streams import read_stream
from services.runtime.connection import connect_operator
from services.runtime.eventstore_jetstream import JetStreamEventStore
from services.runtime.keyvalue_jetstream import JetStreamKeyValue
from services.runtime.settings import Settings
from services.runtime.stored_messages import ReadFailed, replay_batches
from services.runtime.topology import REFERRAL_DEADLINES_BUCKET

PROGRESS_EVERY = 10_000
_BUNDLE_RUN = 1024  # events read from a bundle's copy per run
ACCESS_ACTIONS = ("access.granted", "access.refused")
# A victim-status attestation states something about the person: shown beside the releases.
ATTESTATION_ACTIONS = {
    "attestation.issued": "attested",
    "attestation.revoked": "revoked",
    "attestation.checked": "checked",
}


def add_parser(sub: Any, with_url: Any) -> None:
    """The `audit` subcommands (called once from services/cli.py)."""
    audit = sub.add_parser("audit", help="the tamper-evident audit log: export, verify, replay")
    cmds = audit.add_subparsers(dest="audit_command", required=True)
    export = with_url(cmds.add_parser("export", help="write an audit bundle to a directory"))
    export.add_argument("--out", type=Path, required=True, help="an empty or new directory")
    export.add_argument(
        "--with-events",
        action="store_true",
        help="also copy the audited events (sealed personal data stays sealed) for replay",
    )
    verify = cmds.add_parser("verify", help="verify a bundle offline")
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--since", type=Path, help="a checkpoint note you kept earlier")
    verify.add_argument("--key", type=Path, help="verifier keys you trust (default: the bundle's)")
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.add_argument(
        "--jobs",
        type=_positive,
        default=default_jobs(),
        help="processes that parse and hash leaves (default: the cores, here %(default)s)",
    )
    prove = cmds.add_parser("prove", help="write an inclusion proof for one leaf")
    prove.add_argument("bundle", type=Path)
    prove.add_argument("--index", type=int, required=True)
    prove.add_argument("--out", type=Path, help="proof file (default: proof-<index>.json)")
    check = cmds.add_parser("verify-proof", help="check an inclusion proof offline")
    check.add_argument("proof", type=Path)
    check.add_argument("--key", type=Path, help="verifier keys you trust (default: the proof's)")
    replay = with_url(cmds.add_parser("replay", help="rebuild projections, compare with live"))
    replay.add_argument("--json", action="store_true")
    replay.add_argument("--bundle", type=Path, help="replay a bundle exported --with-events")
    access = with_url(cmds.add_parser("access", help="who was granted or refused a case's data"))
    access.add_argument("--case", required=True, help="the case id")
    access.add_argument("--bundle", type=Path, help="read a bundle instead of the live hub")
    access.add_argument("--json", action="store_true")
    cmds.add_parser("key", help="print the verifier key of this hub's audit signing key")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


async def run(args: argparse.Namespace, settings: Settings, nats_url: Any) -> int:
    """Dispatch one `nrm audit` command; `nats_url()` resolves the hub URL when needed."""
    command = args.audit_command
    try:
        if command == "verify":
            return _verify(args)
        if command == "prove":
            return _prove(args)
        if command == "verify-proof":
            return _verify_proof(args)
        if command == "key":
            print(
                load_signer(
                    settings.audit_signing_key, origin_for(settings.country)
                ).verifier.encode()
            )
            return EXIT_OK
        if command == "access" and args.bundle is not None:
            return await _print_access(args, _bundle_leaves(args.bundle))
        nc = await connect_operator(settings, nats_url())
        try:
            if command == "export":
                return await export(nc, args.out, settings, args.with_events)
            if command == "replay" and args.bundle is not None:
                events = _bundle_events(args.bundle)
                return await replay(nc, args.json, events, _bundle_leaves(args.bundle))
            if command == "replay":
                return await replay(nc, args.json, _live_events(nc), _live_leaves(nc))
            return await _print_access(args, _live_leaves(nc))
        finally:
            await nc.close()
    except BundleUnreadable as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "exit_code": EXIT_UNREADABLE, "error": str(exc)}))
        print(f"nrm audit: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except ReadFailed as exc:  # names the stream and the failure, never a message's content
        print(f"nrm audit: cannot read the hub: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except (OSError, NatsError, TimeoutError) as exc:
        print(f"nrm audit: cannot reach or read the hub: {type(exc).__name__}", file=sys.stderr)
        return EXIT_UNREADABLE


def _progress(label: str) -> Any:
    def report(done: int) -> None:
        print(f"{label}: {done} leaves", file=sys.stderr, flush=True)

    return report


# --- export -------------------------------------------------------------------------------


async def export(nc: Client, out: Path, settings: Settings, with_events: bool = False) -> int:
    try:  # ask for a checkpoint over everything written so far; fine if no audit service runs
        await nc.request(CHECKPOINT_REQUEST, b"", timeout=10)
    except (NoRespondersError, TimeoutError):
        print(
            "nrm audit: no audit service answered; exporting the checkpoints there are",
            file=sys.stderr,
        )
    writer = BundleWriter(out)
    keys: dict[str, VerifierKey] = {}
    # Checkpoints first: every leaf they cover is already stored, so the leaves read next
    # reach at least as far.
    async for message in read_stream(nc, CHECKPOINTS_STREAM):
        writer.checkpoint(message.sequence, message.data)
        encoded = message.headers.get(VERIFIER_KEY_HEADER)
        if encoded:
            key = VerifierKey.parse(encoded)
            keys[key.encode()] = key
    report = _progress("exported")
    audited: set[int] = set()
    async for message in read_stream(nc, AUDIT_STREAM):
        writer.leaf(message.data)
        if with_events:
            source = json.loads(message.data)["data"]["source"]
            if source["stream"] == EVENTS_STREAM:
                audited.add(int(source["sequence"]))
        if writer.leaves % PROGRESS_EVERY == 0:
            report(writer.leaves)
    if with_events:  # only the events the exported leaves vouch for
        async for message in read_stream(nc, EVENTS_STREAM):
            if message.sequence in audited:
                writer.event(message.sequence, message.data)
    writer.close(list(keys.values()), origin_for(settings.country))
    print(f"exported {writer.leaves} leaves and {writer.checkpoints} checkpoints to {out}")
    return EXIT_OK


# --- offline ------------------------------------------------------------------------------


def _trusted(path: Path | None) -> list[VerifierKey] | None:
    return read_keys(path) if path is not None else None


def _verify(args: argparse.Namespace) -> int:
    since = None
    if args.since is not None:
        try:
            since = args.since.read_bytes()
        except OSError as exc:
            raise BundleUnreadable(f"cannot read {args.since}: {type(exc).__name__}") from None
    report = verify_bundle(
        args.bundle, _trusted(args.key), since, _progress("verified"), jobs=args.jobs
    )
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
        return report.exit_code
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.failure is not None:
        kind = "TRUST FAILURE" if report.failure.kind == "trust" else "INTEGRITY FAILURE"
        print(f"{kind}: {report.failure.describe()}")
        return report.exit_code
    print(
        f"OK: {report.leaves} leaves, {report.checkpoints} checkpoints, "
        f"signed up to {report.signed_size}, root {report.root} (trust: {report.trust})"
    )
    if report.leaves > report.signed_size:
        print(f"note: the last {report.leaves - report.signed_size} leaves are not yet signed")
    return EXIT_OK


def _prove(args: argparse.Namespace) -> int:
    try:
        proof = build_inclusion_proof(args.bundle, args.index)
    except ValueError as exc:
        print(f"nrm audit: {exc}", file=sys.stderr)
        return EXIT_INTEGRITY
    out: Path = args.out or Path(f"proof-{args.index}.json")
    out.write_text(json.dumps(proof, indent=2) + "\n")
    print(f"wrote the inclusion proof of leaf {args.index} in size {proof['tree_size']} to {out}")
    return EXIT_OK


def _verify_proof(args: argparse.Namespace) -> int:
    try:
        document = args.proof.read_bytes()
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {args.proof}: {type(exc).__name__}") from None
    code, message = verify_inclusion_proof(document, _trusted(args.key))
    print(("OK: " if code == EXIT_OK else "FAILED: ") + message)
    return code


# --- access -------------------------------------------------------------------------------


async def _live_leaves(nc: Client) -> AsyncIterator[bytes]:
    async for message in read_stream(nc, AUDIT_STREAM):
        yield message.data


async def _bundle_leaves(directory: Path) -> AsyncIterator[bytes]:
    path = directory / LEAVES_FILE
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {path}: {type(exc).__name__}") from None
    with handle:
        for line in handle:
            yield line.rstrip(b"\n")


async def _live_events(nc: Client) -> AsyncIterator[list[tuple[int, bytes]]]:
    async for run in replay_batches(nc, EVENTS_STREAM):
        yield run


async def _bundle_events(directory: Path) -> AsyncIterator[list[tuple[int, bytes]]]:
    path = directory / EVENTS_FILE
    try:
        handle = path.open("rb")
    except OSError as exc:
        reason = f"cannot read {path} (export --with-events): {type(exc).__name__}"
        raise BundleUnreadable(reason) from None
    with handle:
        run: list[tuple[int, bytes]] = []
        for number, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
                run.append(
                    (int(record["sequence"]), base64.b64decode(record["data"], validate=True))
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise BundleUnreadable(f"{path} line {number}: {type(exc).__name__}") from None
            if len(run) == _BUNDLE_RUN:
                yield run
                run = []
        if run:
            yield run


async def _print_access(args: argparse.Namespace, leaves: AsyncIterator[bytes]) -> int:
    rows = []
    async for raw in leaves:
        try:
            entry = parse_leaf(raw)
        except LeafError:
            continue  # `nrm audit verify` is the place that reports broken leaves
        shown = entry.action in ACCESS_ACTIONS or entry.action in ATTESTATION_ACTIONS
        if shown and entry.ids.get("case_id") == args.case:
            rows.append(entry)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return EXIT_OK
    if not rows:
        print(f"no personal-data access recorded for case {args.case}")
        return EXIT_OK
    print(
        f"{'LEAF':>6}  {'TIME':<20} {'AGENCY':<28} {'ROLE':<14} {'DECISION':<8} "
        f"{'PURPOSE':<22} WHY / FIELDS"
    )
    for r in rows:
        decision = ATTESTATION_ACTIONS.get(r.action) or (
            "granted" if r.action == "access.granted" else "refused"
        )
        why = r.detail.get("basis") or r.detail.get("reason") or ""
        fields = ",".join(r.detail.get("fields", []))
        when = r.time.strftime("%Y-%m-%d %H:%M:%S") if r.time else "?"
        purpose = r.purpose or ("attestation" if r.action in ATTESTATION_ACTIONS else "?")
        print(
            f"{r.index:>6}  {when:<20} {r.actor.agency or '?':<28} {r.actor.role or '?':<14} "
            f"{decision:<8} {purpose:<22} {why} [{fields}]"
        )
    return EXIT_OK


# --- replay -------------------------------------------------------------------------------


async def replay(
    nc: Client,
    as_json: bool,
    events: AsyncIterator[list[tuple[int, bytes]]],
    leaves: AsyncIterator[bytes],
) -> int:
    """Fold the events (the live stream, or a bundle's copy) in stream order and compare with
    what the live hub serves: each aggregate as its service loads it, the open-referral
    deadline list, and one audit leaf (with the right hash) for every event."""
    js = nc.jetstream()
    read = ReadEvents()
    with collector_paused():
        async for run in events:
            before = len(read.hashes)
            read.read(run)
            if len(read.hashes) // PROGRESS_EVERY > before // PROGRESS_EVERY:
                done = len(read.hashes) // PROGRESS_EVERY * PROGRESS_EVERY
                print(f"replayed: {done} events", file=sys.stderr, flush=True)
        replayed = project(read.histories)
    histories, hashes, unreadable = read.histories, read.hashes, read.unreadable

    store = JetStreamEventStore(nc, js)
    live_histories: dict[Key, Sequence[Event]] = {}
    for aggregate, aggregate_id in histories:
        loaded = await store.load(aggregate, aggregate_id)
        live_histories[(aggregate, aggregate_id)] = [e.event for e in loaded.events]
    live = project(live_histories)
    bucket = await JetStreamKeyValue.open(nc, REFERRAL_DEADLINES_BUCKET)
    live.open_referrals = set(await bucket.keys())
    found = differences(replayed, live)

    audited: dict[int, str] = {}
    async for raw in leaves:
        entry = parse_leaf(raw)
        if entry.source.stream == EVENTS_STREAM:
            audited[entry.source.sequence] = entry.source.sha256
    for seq in sorted(hashes):
        if seq not in audited:
            found.append(f"event {seq}: no audit leaf")
        elif audited[seq] != hashes[seq]:
            found.append(f"event {seq}: the audit leaf records another hash")
    summary = _summary(replayed, len(hashes), unreadable)
    if as_json:
        print(json.dumps({"ok": not found, "summary": summary, "differences": found}, indent=2))
    else:
        print("replayed " + ", ".join(f"{v} {k}" for k, v in summary.items()))
        for line in found:
            print(f"DIFFERENCE: {line}")
        print(
            "no difference from the live projections" if not found else f"{len(found)} differences"
        )
    return EXIT_OK if not found else EXIT_INTEGRITY


def _summary(p: Projections, events: int, unreadable: int) -> dict[str, int]:
    return {
        "events": events,
        "unreadable events": unreadable,
        "cases": len(p.cases),
        "referrals": len(p.referrals),
        "shelters": len(p.shelters),
        "open referrals": len(p.open_referrals),
    }

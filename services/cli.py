"""`nrm`: the hub's one command line.

    nrm up        start an embedded nats-server (unless --nats-url), bootstrap, run all services
    nrm run NAME  run one service against a running NATS (what a container runs)
    nrm bootstrap create streams, consumers and buckets on a running NATS
    nrm demo      run the seed scenario end to end and check every outcome
    nrm dlq list | retry ID        dead letters: what failed and why; re-drive after a fix
    nrm contracts generate|check   JSON Schema + AsyncAPI from the contract models
    nrm audit export|verify|prove|verify-proof|replay|access|key   the tamper-evident audit log

Every command that talks to a running hub takes --nats-url (default: $NRM_NATS_URL, else
the local hub started by `nrm up`, whose URL it writes to DATA_DIR/hub.url).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import nats
from nats.errors import NoRespondersError

from contracts.operations import DeadLetterResolved, RedriveRequest
from contracts.subjects import redrive_subject
from services.audit import cli as audit_cli
from services.audit.checkpoint import create_signing_key
from services.bootstrap import (
    SERVICES,
    bootstrap,
    local_hub,
    running_services,
    start_service,
)
from services.runtime.case_keys import KeyCustodyError, create_key_encryption_key
from services.runtime.dead_letters import dead_letter, dead_letters
from services.runtime.logging import configure_logging
from services.runtime.settings import Settings, SettingsError, nats_servers

READY_LINE = "NRM hub ready {url}"


def _hub_url_file(settings: Settings) -> Path:
    return settings.data_dir / "hub.url"


def resolve_nats_url(settings: Settings) -> str:
    if settings.nats_url:
        return settings.nats_url
    url_file = _hub_url_file(settings)
    if url_file.exists():
        return url_file.read_text().strip()
    raise SettingsError(
        "no NATS URL: pass --nats-url, set NRM_NATS_URL, or start a local hub with `nrm up`"
    )


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def cmd_up(settings: Settings, port: int | None) -> int:
    create_key_encryption_key(settings.key_encryption_key_file)
    create_signing_key(settings.audit_signing_key)
    async with local_hub(settings, port) as url, running_services(url, settings):
        _hub_url_file(settings).write_text(url + "\n")
        print(READY_LINE.format(url=url), flush=True)
        try:
            await _wait_for_stop()
        finally:
            _hub_url_file(settings).unlink(missing_ok=True)
    return 0


async def cmd_run(settings: Settings, service: str) -> int:
    url = resolve_nats_url(settings)
    running = await start_service(service, url, settings)
    print(f"NRM {service} consuming {url}", flush=True)
    try:
        await _wait_for_stop()
    finally:
        await running.stop()
    return 0


async def cmd_bootstrap(settings: Settings) -> int:
    url = resolve_nats_url(settings)
    await bootstrap(url, settings)
    print(f"NRM topology ready on {url}")
    return 0


async def cmd_dlq_list(settings: Settings, show_all: bool, as_json: bool) -> int:
    nc = await nats.connect(nats_servers(resolve_nats_url(settings)), name="nrm-dlq")
    try:
        letters = [d for d in await dead_letters(nc.jetstream()) if show_all or not d.resolved]
    finally:
        await nc.close()
    if as_json:
        print(json.dumps([asdict(d) for d in letters], indent=2))
        return 0
    if not letters:
        print("no dead letters" if show_all else "no unresolved dead letters")
        return 0
    print(f"{'ID':>5}  {'CONSUMER':<28} {'EVENT SEQ':>9} {'TRIES':>5}  {'STATE':<10} REASON")
    for d in letters:
        state = "resolved" if d.resolved else "dead"
        print(
            f"{d.id:>5}  {d.consumer:<28} {d.stream_sequence:>9} {d.attempts:>5}  "
            f"{state:<10} {d.reason}"
        )
    return 0


async def cmd_dlq_retry(settings: Settings, letter_id: int) -> int:
    nc = await nats.connect(nats_servers(resolve_nats_url(settings)), name="nrm-dlq")
    try:
        letter = await dead_letter(nc.jetstream(), letter_id)
        if letter is None:
            print(f"nrm: no dead letter {letter_id}", file=sys.stderr)
            return 2
        try:
            reply = await nc.request(
                redrive_subject(letter.consumer),
                RedriveRequest(dead_letter_id=letter_id).model_dump_json().encode(),
                timeout=30,
            )
        except NoRespondersError:
            print(f"nrm: no {letter.consumer} consumer is running to re-drive it", file=sys.stderr)
            return 1
    finally:
        await nc.close()
    answer = json.loads(reply.data)
    if answer["type"] == DeadLetterResolved.TYPE:
        print(f"dead letter {letter_id} re-driven through {letter.consumer}: resolved")
        return 0
    for error in answer["data"]["errors"]:
        print(f"nrm: dead letter {letter_id}: {error['reason']}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrm", description="NRM Hub")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--nats-url", help="NATS URL (default: $NRM_NATS_URL or the local hub)")
        return p

    up = with_url(sub.add_parser("up", help="run the whole hub (embedded NATS by default)"))
    up.add_argument("--data", type=Path, help="state directory (default ./var)")
    up.add_argument("--port", type=int, help="embedded NATS port (default: a free one)")
    run = with_url(sub.add_parser("run", help="run one service"))
    run.add_argument("service", choices=SERVICES)
    with_url(sub.add_parser("bootstrap", help="create streams, consumers and buckets"))
    with_url(sub.add_parser("demo", help="run the seed scenario and check the outcomes"))
    dlq = sub.add_parser("dlq", help="dead letters: events a consumer could not apply")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = with_url(dlq_sub.add_parser("list", help="list unresolved dead letters"))
    dlq_list.add_argument("--all", action="store_true", help="include resolved ones")
    dlq_list.add_argument("--json", action="store_true", help="machine-readable output")
    dlq_retry = with_url(dlq_sub.add_parser("retry", help="re-drive one dead letter after a fix"))
    dlq_retry.add_argument("id", type=int, help="the dead letter's ID from `nrm dlq list`")
    audit_cli.add_parser(sub, with_url)
    contracts = sub.add_parser("contracts", help="generated contract documents")
    contracts.add_argument("action", choices=("generate", "check"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo prints its own timeline; service logs would only interleave with it.
    configure_logging("WARNING" if args.command == "demo" else "INFO")
    try:
        settings = Settings.from_env(
            nats_url=getattr(args, "nats_url", None), data_dir=getattr(args, "data", None)
        )
        if args.command == "up":
            return asyncio.run(cmd_up(settings, args.port))
        if args.command == "run":
            return asyncio.run(cmd_run(settings, args.service))
        if args.command == "bootstrap":
            return asyncio.run(cmd_bootstrap(settings))
        if args.command == "dlq" and args.dlq_command == "list":
            return asyncio.run(cmd_dlq_list(settings, args.all, args.json))
        if args.command == "dlq":
            return asyncio.run(cmd_dlq_retry(settings, args.id))
        if args.command == "audit":
            return asyncio.run(audit_cli.run(args, settings, lambda: resolve_nats_url(settings)))
        if args.command == "demo":
            from services.demo import run_demo

            return asyncio.run(run_demo(settings))
        from contracts.generate import main as contracts_main

        return contracts_main(args.action)
    except (SettingsError, KeyCustodyError) as exc:
        print(f"nrm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

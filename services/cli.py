"""`nrm`: the hub's one command line.

    nrm up        start an embedded nats-server (unless --nats-url), bootstrap, run all services
                  (--workers N: in N processes; default one per core)
    nrm run NAME  run one service against a running NATS (what a container runs)
    nrm run gateway   HTTPS (mutual TLS) for agencies without NATS (docs/GATEWAY.md)
    nrm bootstrap create streams, consumers and buckets on a running NATS
    nrm demo      run the seed scenario end to end and check every outcome
    nrm demo --cross-border        three country hubs linked: referrals across borders
    nrm dlq list | retry ID        dead letters: what failed and why; re-drive after a fix
    nrm status    services running, consumer lag, dead letters, last audit entry
    nrm stats [report|htcds]       statistics for the coordinating body and publication
    nrm cases unmet|waiting|overdue  the coordinating body's worklists (ids, codes, dates)
    nrm contracts generate|check   JSON Schema + AsyncAPI from the contract models
    nrm agency keygen | register-key   an agency's key pair for receiving personal data
    nrm case erase CASE_ID         crypto-shred a case (identifying agency or coordinating body)
    nrm keys init --out DIR | check   every secret the hub needs, created (0600) or checked
    nrm keys rotate-kek            new key-encryption key; re-wrap every case key under it
    nrm audit export|verify|prove|verify-proof|replay|access|key   the tamper-evident audit log
    nrm attest issue|revoke|key|status-list|verify|qr   victim-status attestations (verify
                                   works offline: docs/ATTESTATION.md)
    nrm bench [--out FILE]         hub speed beside raw NATS ceilings (docs/PERFORMANCE.md)

Every command that talks to a running hub takes --nats-url (default: $NRM_NATS_URL, else
the local hub started by `nrm up`, whose URL it writes to DATA_DIR/hub.url).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from nats.errors import NoRespondersError

from contracts.attestation import issuer_for, read_signing_key
from contracts.commands import Command, EraseCase, RegisterAgencyKey
from contracts.operations import DeadLetterResolved, RedriveRequest
from contracts.public_key_sealing import (
    generate_private_key,
    key_id,
    public_key_b64,
    public_key_from_b64,
    read_private_key,
    write_private_key,
)
from contracts.subjects import redrive_subject
from contracts.vocabulary import ErasureReason
from services.agencies.registry import load_registry
from services.audit import cli as audit_cli
from services.audit.checkpoint import load_signer
from services.audit.service import origin_for
from services.bootstrap import bootstrap, local_hub, start_service
from services.client import HubClient
from services.gateway.server import running_gateway, start_gateway
from services.runtime.case_keys import (
    CaseKeys,
    KeyCustodyError,
    create_hub_keys,
    read_key_ring,
    read_secret,
    retire_old_keys,
    rotate_key_ring,
)
from services.runtime.connection import (
    EXIT_UNREACHABLE,
    HubUnreachable,
    connect_operator,
)
from services.runtime.dead_letters import dead_letter, dead_letters
from services.runtime.health import health_server
from services.runtime.keyvalue_jetstream import JetStreamKeyValue
from services.runtime.logging import configure_logging
from services.runtime.loops import run_process
from services.runtime.service_table import SERVICES, Key
from services.runtime.settings import Settings, SettingsError
from services.runtime.status import hub_status
from services.runtime.topology import CASE_KEYS_BUCKET
from services.workers import WorkerFailed, default_workers, serving_services
from services.workers import stop_on_signals as _stop_on_signals

READY_LINE = "NRM hub ready {url}"
GATEWAY_LINE = "NRM gateway listening on https://{host}:{port}"
GATEWAY = "gateway"  # `nrm run gateway`: not a service of the table (no commands of its own)


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


INSECURE_WARNING = """\
nrm: WARNING: --insecure: this hub admits anyone who can reach its port, and believes the
nrm: agency_id written in each command: any client can act as any agency, the coordinating
nrm: body included, and read personal data. For experiments on your own machine only."""


def hub_settings(settings: Settings, insecure: bool) -> Settings:
    """`nrm up`'s settings: an embedded hub admits only the nkey users it creates in
    DATA_DIR/credentials, unless --insecure. A NATS given by URL is secured (or not) by
    whoever runs it; its credentials come from the environment."""
    if settings.nats_url is not None:
        return settings
    credentials = None if insecure else local_credentials(settings)
    return settings.model_copy(update={"nats_credentials": credentials})


def local_credentials(settings: Settings) -> Path:
    return settings.nats_credentials or settings.data_dir / "credentials"


def with_local_credentials(settings: Settings) -> Settings:
    """An operator command on the local hub signs in with the seeds `nrm up` left there."""
    url_file = _hub_url_file(settings)
    local = settings.nats_url is None or (
        url_file.exists() and url_file.read_text().strip() == settings.nats_url
    )
    if local and settings.nats_credentials is None:
        directory = local_credentials(settings)
        if directory.is_dir():
            return settings.model_copy(update={"nats_credentials": directory})
    return settings


async def cmd_up(
    settings: Settings, port: int | None, insecure: bool = False, workers: int | None = None
) -> int:
    """The whole hub; with more than one worker the services run in worker processes
    (services/workers.py) and this process keeps NATS, the gateway and the health server."""
    settings = hub_settings(settings, insecure)
    workers = workers or default_workers(settings)
    if insecure:
        print(INSECURE_WARNING, file=sys.stderr, flush=True)
    create_hub_keys(settings)
    async with (
        local_hub(settings, port) as url,
        serving_services(url, settings, workers) as serving,
        running_gateway(settings, url) as gateway,
        health_server(settings, serving),
    ):
        stop = _stop_on_signals()
        _hub_url_file(settings).write_text(url + "\n")
        if gateway is not None:
            print(GATEWAY_LINE.format(host=gateway.host, port=gateway.port), flush=True)
        print(READY_LINE.format(url=url), flush=True)
        try:
            await stop.wait()
        finally:
            _hub_url_file(settings).unlink(missing_ok=True)
    return 0


async def cmd_run(settings: Settings, service: str) -> int:
    url = resolve_nats_url(settings)
    if service == GATEWAY:
        return await cmd_gateway(settings, url)
    running = await start_service(service, url, settings)
    try:
        async with health_server(settings, [running.host]) as port:
            health = f" (health on {settings.health_host}:{port})" if port else ""
            stop = _stop_on_signals()
            print(f"NRM {service} consuming {url}{health}", flush=True)
            await stop.wait()
    finally:
        await running.stop()
    return 0


async def cmd_gateway(settings: Settings, url: str) -> int:
    """The HTTPS gateway alone: a NATS client of the hub, acting for each agency with that
    agency's own credentials (services/gateway/)."""
    gateway = await start_gateway(settings, url)
    try:
        async with health_server(settings, []) as port:
            health = f" (health on {settings.health_host}:{port})" if port else ""
            stop = _stop_on_signals()
            print(GATEWAY_LINE.format(host=gateway.host, port=gateway.port) + health, flush=True)
            await stop.wait()
    finally:
        await gateway.stop()
    return 0


async def cmd_bootstrap(settings: Settings) -> int:
    url = resolve_nats_url(settings)
    await bootstrap(url, settings)
    print(f"NRM topology ready on {url}")
    return 0


async def cmd_dlq_list(settings: Settings, show_all: bool, as_json: bool) -> int:
    nc = await connect_operator(settings, resolve_nats_url(settings))
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
    nc = await connect_operator(settings, resolve_nats_url(settings))
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


async def cmd_status(settings: Settings, as_json: bool) -> int:
    nc = await connect_operator(settings, resolve_nats_url(settings))
    try:
        status = await hub_status(nc)
    finally:
        await nc.close()
    print(json.dumps(status.to_json(), indent=2) if as_json else status.render())
    return 0


async def cmd_agency_keygen(agency_id: str, out: Path) -> int:
    private_key = generate_private_key()
    key_file, public_file = out / f"{agency_id}.key", out / f"{agency_id}.pub"
    if key_file.exists():
        print(f"nrm: {key_file} exists; not overwriting an agency key", file=sys.stderr)
        return 2
    write_private_key(private_key, key_file)
    public_file.write_text(public_key_b64(private_key.public_key()) + "\n")
    print(f"private key {key_file} (keep it; mode 0600)")
    print(f"public key  {public_file} (key id {key_id(private_key.public_key())})")
    print(f"hand {public_file.name} to the coordinating body, which runs:")
    print(f"  nrm agency register-key --agency {agency_id} --public-key {public_file.name}")
    return 0


async def _send(settings: Settings, command: Command) -> int:
    """Send one command to the running hub as its agency (with that agency's credentials
    on a secured hub); print the reply; exit 0 if accepted."""
    nc = await connect_operator(settings, resolve_nats_url(settings), command.agency_id)
    try:
        reply = await HubClient(nc).send(command)
    finally:
        await nc.close()
    if reply["status"] == "accepted":
        print(f"{command.NAME}: accepted ({reply['aggregate_id']})")
        return 0
    for error in reply.get("errors", []):
        print(f"nrm: {command.NAME} rejected: {error['field']}: {error['reason']}", file=sys.stderr)
    return 1


async def cmd_agency_register_key(settings: Settings, agency_id: str, public_file: Path) -> int:
    """As the coordinating body: register the public key an agency handed over (verify its
    key id with the agency out of band first)."""
    try:
        public_key = public_key_from_b64(public_file.read_text().strip())
    except (OSError, ValueError) as exc:
        print(f"nrm: {public_file}: {exc}", file=sys.stderr)
        return 2
    registrar = load_registry(settings.agency_registry).coordinating_body
    command = RegisterAgencyKey(
        command_id=uuid.uuid4(),
        agency_id=registrar,
        for_agency=agency_id,
        public_key=public_key_b64(public_key),
    )
    print(f"registering key {key_id(public_key)} for {agency_id} as {registrar}")
    return await _send(settings, command)


async def cmd_case_erase(
    settings: Settings, case_id: uuid.UUID, agency_id: str, reason: ErasureReason
) -> int:
    command = EraseCase(
        command_id=uuid.uuid4(), agency_id=agency_id, case_id=case_id, reason=reason
    )
    return await _send(settings, command)


def hub_secrets(settings: Settings) -> dict[str, Path]:
    """Every secret a hub needs, by the setting that names its file (runtime/service_table.py)."""
    return {key.value: key.path(settings) for key in Key}


def cmd_keys_init(settings: Settings, out: Path) -> int:
    """Create every secret in `out` (0600; the public halves beside them), never over an
    existing one, and say which settings point at them."""
    files = settings.model_copy(
        update={
            "kek_file": out / "kek",
            "intake_key_file": out / "intake.pem",
            "blind_index_key_file": out / "blind-index",
            "audit_signing_key_file": out / "audit-signing",
            "attestation_signing_key_file": out / "attestation-signing",
        }
    )
    existing = [str(path) for path in hub_secrets(files).values() if path.exists()]
    if existing:
        print(f"nrm: not overwriting existing secrets: {', '.join(existing)}", file=sys.stderr)
        return 2
    create_hub_keys(files)
    intake = read_private_key(files.intake_private_key_file).public_key()
    (out / "intake.pub").write_text(public_key_b64(intake) + "\n")
    signer = load_signer(files.audit_signing_key, origin_for(settings.country))
    (out / "audit-signing.vkey").write_text(signer.verifier.encode() + "\n")
    attestation = read_signing_key(files.attestation_signing_key, issuer_for(settings.country))
    (out / "attestation.pub").write_text(attestation.public.to_json() + "\n")
    for setting, path in hub_secrets(files).items():
        print(f"{setting}={path}")
    print(f"public: {out / 'intake.pub'} (agencies seal to it), {out / 'audit-signing.vkey'},")
    print(f"        {out / 'attestation.pub'} (officers verify attestations with it)")
    return 0


def cmd_keys_check(settings: Settings) -> int:
    """Each secret the settings name: present and well formed, or what is wrong with it."""
    readers: dict[str, Callable[[Path], object]] = {
        Key.KEK.value: read_key_ring,
        Key.INTAKE.value: read_private_key,
        Key.BLIND_INDEX.value: lambda path: read_secret(path, "blind-index key"),
        Key.AUDIT_SIGNING.value: lambda path: load_signer(path, origin_for(settings.country)),
        Key.ATTESTATION_SIGNING.value: lambda path: read_signing_key(
            path, issuer_for(settings.country)
        ),
    }
    problems = 0
    for setting, path in hub_secrets(settings).items():
        try:
            readers[setting](path)
        except (KeyCustodyError, ValueError, OSError) as exc:
            problems += 1
            print(f"{setting}: {str(exc).removeprefix(setting + ': ')}")
            continue
        loose = path.stat().st_mode & 0o077
        print(f"{setting}: ok {path}" + (" (readable by others: chmod 600)" if loose else ""))
        problems += bool(loose)
    return 1 if problems else 0


async def cmd_rotate_kek(settings: Settings, keep_old: bool) -> int:
    ring_file = settings.key_encryption_key_file
    ring = rotate_key_ring(ring_file)
    nc = await connect_operator(settings, resolve_nats_url(settings))
    try:
        bucket = await JetStreamKeyValue.open(nc, CASE_KEYS_BUCKET)
        moved = await CaseKeys(bucket, ring_file).rewrap_all()
    finally:
        await nc.close()
    if not keep_old:
        retire_old_keys(ring_file)
    print(f"key-encryption key {ring.current} is current; {moved} case keys re-wrapped")
    return 0


def _version() -> str:
    """The installed distribution's version (pyproject.toml), as pip knows it."""
    try:
        return metadata.version("nrm-hub")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrm", description="NRM Hub")
    parser.add_argument("--version", action="version", version=f"nrm {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--nats-url", help="NATS URL (default: $NRM_NATS_URL or the local hub)")
        return p

    up = with_url(sub.add_parser("up", help="run the whole hub (embedded NATS by default)"))
    up.add_argument("--data", type=Path, help="state directory (default ./var)")
    up.add_argument("--port", type=int, help="embedded NATS port (default: a free one)")
    up.add_argument(
        "--insecure",
        action="store_true",
        help="open mode: no credentials, the body's agency_id is believed (experiments only)",
    )
    up.add_argument(
        "--country",
        choices=("kg", "kz", "uz"),
        help="which country's hub (registry, source); default $NRM_COUNTRY or kg",
    )
    up.add_argument(
        "--workers",
        type=_at_least_one,
        help="processes to run the services in (default $NRM_WORKERS, else one per core; "
        "1 = all in this process)",
    )
    run = with_url(sub.add_parser("run", help="run one service, or the HTTPS gateway"))
    run.add_argument(
        "service",
        choices=(*SERVICES, GATEWAY),
        help="a service, or `gateway`: HTTPS with client certificates for agencies without "
        "NATS (NRM_GATEWAY_HOST/PORT/TLS_CERT/TLS_KEY/TLS_CA; docs/GATEWAY.md)",
    )
    with_url(sub.add_parser("bootstrap", help="create streams, consumers and buckets"))
    demo = with_url(sub.add_parser("demo", help="run the seed scenario and check the outcomes"))
    demo.add_argument(
        "--cross-border",
        action="store_true",
        help="three country hubs (kg, kz, uz) linked: referrals across borders",
    )
    dlq = sub.add_parser("dlq", help="dead letters: events a consumer could not apply")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = with_url(dlq_sub.add_parser("list", help="list unresolved dead letters"))
    dlq_list.add_argument("--all", action="store_true", help="include resolved ones")
    dlq_list.add_argument("--json", action="store_true", help="machine-readable output")
    dlq_retry = with_url(dlq_sub.add_parser("retry", help="re-drive one dead letter after a fix"))
    dlq_retry.add_argument("id", type=int, help="the dead letter's ID from `nrm dlq list`")
    agency = sub.add_parser("agency", help="an agency's key pair for personal data")
    agency_sub = agency.add_subparsers(dest="agency_command", required=True)
    keygen = agency_sub.add_parser("keygen", help="create an agency key pair (X25519)")
    keygen.add_argument("--agency", required=True, help="the agency id from the registry")
    keygen.add_argument("--out", type=Path, default=Path("."), help="directory for the files")
    register_key = with_url(
        agency_sub.add_parser("register-key", help="(coordinating body) register an agency key")
    )
    register_key.add_argument("--agency", required=True, help="whose key it is")
    register_key.add_argument(
        "--public-key", type=Path, required=True, help="the .pub file from keygen"
    )
    case = sub.add_parser("case", help="case administration")
    case_sub = case.add_subparsers(dest="case_command", required=True)
    erase = with_url(case_sub.add_parser("erase", help="crypto-shred a case"))
    erase.add_argument("case_id", type=uuid.UUID)
    erase.add_argument("--agency", required=True, help="identifying agency or coordinating body")
    erase.add_argument("--reason", type=ErasureReason, choices=list(ErasureReason), required=True)
    keys = sub.add_parser("keys", help="the hub's key-encryption keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    init = keys_sub.add_parser("init", help="create every secret the hub needs (0600)")
    init.add_argument("--out", type=Path, required=True, help="directory for the secrets")
    keys_sub.add_parser("check", help="is every secret the settings name there and well formed?")
    rotate = with_url(keys_sub.add_parser("rotate-kek", help="rotate the key-encryption key"))
    rotate.add_argument(
        "--keep-old", action="store_true", help="keep retired KEKs in the ring (default: drop)"
    )
    status = with_url(sub.add_parser("status", help="services, consumer lag, dead letters"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    from services.statistics.command import add_parser as add_stats_parser

    add_stats_parser(sub)
    from services.worklists.command import add_parser as add_worklists_parser

    add_worklists_parser(sub)
    audit_cli.add_parser(sub, with_url)
    from services.attest_command import add_parser as add_attest_parser

    add_attest_parser(sub)
    from nrm_tools.bench.command import add_parser as add_bench_parser

    add_bench_parser(sub)
    contracts = sub.add_parser("contracts", help="generated contract documents")
    contracts.add_argument("action", choices=("generate", "check"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo and the bench print their own output; service logs would only interleave.
    configure_logging("WARNING" if args.command in ("demo", "bench") else "INFO")
    try:
        settings = Settings.from_env(
            nats_url=getattr(args, "nats_url", None),
            data_dir=getattr(args, "data", None),
            country=getattr(args, "country", None),
        )
        if args.command == "up":
            return run_process(cmd_up(settings, args.port, args.insecure, args.workers))
        settings = with_local_credentials(settings)
        if args.command == "run":
            return run_process(cmd_run(settings, args.service))
        if args.command == "bootstrap":
            return asyncio.run(cmd_bootstrap(settings))
        if args.command == "status":
            return asyncio.run(cmd_status(settings, args.json))
        if args.command == "dlq" and args.dlq_command == "list":
            return asyncio.run(cmd_dlq_list(settings, args.all, args.json))
        if args.command == "dlq":
            return asyncio.run(cmd_dlq_retry(settings, args.id))
        if args.command == "agency" and args.agency_command == "keygen":
            return asyncio.run(cmd_agency_keygen(args.agency, args.out))
        if args.command == "agency":
            return asyncio.run(cmd_agency_register_key(settings, args.agency, args.public_key))
        if args.command == "case":
            return asyncio.run(cmd_case_erase(settings, args.case_id, args.agency, args.reason))
        if args.command == "keys" and args.keys_command == "init":
            return cmd_keys_init(settings, args.out)
        if args.command == "keys" and args.keys_command == "check":
            return cmd_keys_check(settings)
        if args.command == "keys":
            return asyncio.run(cmd_rotate_kek(settings, args.keep_old))
        if args.command == "stats":
            from services.statistics.command import run as run_stats

            return asyncio.run(run_stats(args, resolve_nats_url(settings), settings))
        if args.command == "cases":
            from services.worklists.command import run as run_worklists

            return asyncio.run(run_worklists(args, resolve_nats_url(settings), settings))
        if args.command == "attest":
            from services import attest_command

            offline = attest_command.run_offline(args)  # verify, qr: no hub, no NATS
            if offline is not None:
                return offline
            return asyncio.run(
                attest_command.run_online(args, settings, resolve_nats_url(settings))
            )
        if args.command == "audit":
            return asyncio.run(audit_cli.run(args, settings, lambda: resolve_nats_url(settings)))
        if args.command == "demo" and args.cross_border:
            from nrm_tools.crossborder_demo import run_crossborder_demo

            return asyncio.run(run_crossborder_demo())
        if args.command == "bench":
            from nrm_tools.bench.command import main as bench_main

            return run_process(bench_main(args))
        if args.command == "demo":
            from nrm_tools.demo import run_demo

            return asyncio.run(run_demo(settings))
        from contracts.generate import main as contracts_main

        return contracts_main(args.action)
    except (SettingsError, KeyCustodyError) as exc:
        print(f"nrm: {exc}", file=sys.stderr)
        return 2
    except HubUnreachable as exc:
        print(f"nrm: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except WorkerFailed as exc:
        print(f"nrm: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

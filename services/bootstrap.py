"""The one place that wires the hub together: settings + registry + NATS -> running services."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.errors import NoRespondersError
from nats.js.errors import ServiceUnavailableError
from structlog.contextvars import bound_contextvars

from services.agencies.registry import load_registry
from services.audit import service as audit
from services.custody import service as custody
from services.identifier import followups
from services.identifier import service as identifier
from services.referral.service import ReferralService
from services.runtime.connection import ADMIN_ROLE, connect_options
from services.runtime.embedded import EmbeddedNats
from services.runtime.health import poll_consumer_lag, register_ping
from services.runtime.loops import keep_running, loop_name, stop_loops
from services.runtime.messaging import Runtime, ServiceHost
from services.runtime.nkey_users import nkey_accounts
from services.runtime.permissions import hub_auth
from services.runtime.service_table import SERVICES, Entry, consumer_configs, entry, takeovers
from services.runtime.settings import Settings, SettingsError, nats_servers
from services.runtime.topology import ConsumerSpec
from services.runtime.topology import bootstrap as bootstrap_topology
from services.runtime.writer import Clock, utc_now
from services.shelter import service as shelter

Loop = Callable[[], Coroutine[Any, Any, None]]
Register = Callable[[ServiceHost], list[Loop]]


def _referral(host: ServiceHost) -> list[Loop]:
    referral = ReferralService(host)
    referral.register()
    # The deadline sweep; the cross-border relay and ingress (peers only).
    return [referral.run_deadline_sweeps, *referral.link.loops()]


def _identifier(host: ServiceHost) -> list[Loop]:
    identifier.register(host)
    # The sweep that escalates follow-ups not recorded by their due date.
    return [functools.partial(followups.run_overdue_sweeps, host.runtime)]


def _without_loops(register: Callable[[ServiceHost], None]) -> Register:
    def registered(host: ServiceHost) -> list[Loop]:
        register(host)
        return []

    return registered


# How each service of the table (runtime/service_table.py) is built: its handlers registered on a
# host, and the background loops it needs. tests/unit/test_service_table.py checks that the
# two name the same services.
REGISTER: dict[str, Register] = {
    "identifier": _identifier,
    "referral": _referral,
    "shelter": _without_loops(shelter.register),
    "audit": audit.register,
    "custody": _without_loops(custody.register),
}


async def bootstrap(nats_url: str, settings: Settings, within: float = 60.0) -> None:
    """Create the streams, consumers and buckets the services bind to. A cluster that is
    still electing its JetStream leader is waited for, up to `within` seconds."""
    registry = load_registry(settings.agency_registry, settings.country)
    consumers = consumer_configs(settings, [peer.country for peer in registry.peers])
    nc = await nats.connect(nats_servers(nats_url), **connect_options(settings, ADMIN_ROLE))
    deadline = asyncio.get_running_loop().time() + within
    try:
        while True:
            try:
                await bootstrap_topology(nc, consumers, settings.replicas, takeovers())
                return
            except (ServiceUnavailableError, NoRespondersError, TimeoutError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def local_hub(settings: Settings, port: int | None = None) -> AsyncIterator[str]:
    """A NATS URL with the topology bootstrapped: the configured one, or an embedded
    nats-server with its state under DATA_DIR/nats, stopped on exit. The embedded one admits
    only the hub's nkey users when `settings.nats_credentials` is set (`nrm up`'s default)."""
    embedded: EmbeddedNats | None = None
    url = settings.nats_url
    if url is None:
        users = ""
        if settings.nats_credentials is not None:  # secured: nkey users, per-user permissions
            registry = load_registry(settings.agency_registry, settings.country)
            users = nkey_accounts(hub_auth(registry), settings.nats_credentials)
        embedded = EmbeddedNats(settings.data_dir / "nats", port=port, extra_config=users)
        url = await embedded.start()
    try:
        await bootstrap(url, settings)
        yield url
    finally:
        if embedded is not None:
            embedded.stop()


@dataclass
class RunningService:
    name: str
    host: ServiceHost
    background: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        try:
            await stop_loops(self.host.runtime.lifetime, self.background)
        finally:
            await self.host.stop()


def build_service(
    name: str, nats_url: str, settings: Settings, clock: Clock = utc_now
) -> tuple[ServiceHost, list[Loop]]:
    """A service host with its handlers registered, and its background loops (not started)."""
    declared = entry(name)  # an unknown name: ValueError listing the services
    registry = load_registry(settings.agency_registry, settings.country)
    if registry.country != settings.country:  # a hub must not run on another country's list
        raise SettingsError(
            f"NRM_AGENCY_REGISTRY is the {registry.country!r} registry, not {settings.country!r}"
        )
    runtime = Runtime(settings=settings, registry=registry, clock=clock)
    host = ServiceHost(name, runtime, nats_url)
    loops = REGISTER[name](host)
    check_registered(host, declared)
    register_ping(host)
    loops.append(functools.partial(poll_consumer_lag, host))
    return host, loops


class RegistrationDrift(Exception):
    """A service registered other commands or consumers than its table entry says: the
    permissions, routing and topology derived from the table would not fit what it runs."""


def check_registered(host: ServiceHost, declared: Entry) -> None:
    """Fail at start-up when `register` and the table disagree, either way."""
    commands = {c.NAME for c in host.command_handlers}
    consumers = {pull.durable for pull in host.pulls}
    table_commands = {c.NAME for c in declared.commands}
    # The audit writer runs its own loops over the table's audit consumers (not host.pulls).
    table_consumers = {c.durable for c in declared.consumers if isinstance(c, ConsumerSpec)}
    drift = [
        f"{what} {sorted(extra)} {how}"
        for what, extra, how in (
            ("commands", commands - table_commands, "registered but not in the table"),
            ("commands", table_commands - commands, "in the table but not registered"),
            ("consumers", consumers - table_consumers, "registered but not in the table"),
            ("consumers", table_consumers - consumers, "in the table but not registered"),
        )
        if extra
    ]
    if drift:
        raise RegistrationDrift(
            f"service {host.service!r}: {'; '.join(drift)} (runtime/service_table.py)"
        )


async def start_service(
    name: str, nats_url: str, settings: Settings, clock: Clock = utc_now
) -> RunningService:
    # Every task the service starts copies this context: each log line names its service,
    # even when `nrm up` runs all of them in one process.
    with bound_contextvars(service=name):
        host, loops = build_service(name, nats_url, settings, clock)
        await host.start()
        lifetime = host.runtime.lifetime
        kept = [keep_running(lifetime, name, loop_name(loop), loop) for loop in loops]
        return RunningService(name, host, [asyncio.create_task(loop) for loop in kept])


@contextlib.asynccontextmanager
async def running_services(
    nats_url: str,
    settings: Settings,
    names: Sequence[str] = SERVICES,
    clock: Clock = utc_now,
) -> AsyncIterator[list[RunningService]]:
    """Start the named services (all by default) in this process; stop them on exit."""
    started: list[RunningService] = []
    try:
        for name in names:
            started.append(await start_service(name, nats_url, settings, clock))
        yield started
    finally:
        for service in reversed(started):
            await service.stop()

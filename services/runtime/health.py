"""The signals ops run the hub by: liveness, readiness, Prometheus metrics, and a ping.

- `/livez`: the process's event loop answers (200).
- `/readyz`: every service in the process is connected to NATS and consuming (200), else 503
  with which one is not.
- `/metrics`: Prometheus exposition (prometheus-client). Labels are service, command,
  consumer and outcome names only: never an id, never personal data.
- `nrm.ctl.ping`: every running service instance answers who it is and whether it is ready;
  `nrm status` gathers the answers.

The HTTP server is off unless NRM_HEALTH_PORT is set; it binds NRM_HEALTH_HOST (default
loopback; a container sets 0.0.0.0 and keeps the port off the public network).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from faststream.nats import NatsMessage, NatsResponse
from nats.errors import Error as NatsError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from contracts.subjects import PING_SUBJECT
from services.runtime.dead_letters import dead_letters
from services.runtime.logging import get_logger
from services.runtime.service_table import every_durable
from services.runtime.settings import Settings

if TYPE_CHECKING:
    from services.runtime.messaging import ServiceHost

log = get_logger("nrm.health")
LAG_POLL_SECONDS = 15.0

COMMANDS = Counter(
    "nrm_commands_total",
    "Commands answered, by outcome (accepted, rejected, failed)",
    ["service", "command", "outcome"],
)
EVENTS = Counter(
    "nrm_events_total",
    "Events a consumer took, by outcome (handled, retried, dead_lettered)",
    ["service", "consumer", "outcome"],
)
REJECTIONS_HELD_BACK = Counter(
    "nrm_rejections_held_back_total",
    "Rejection notices of unidentified senders not stored (over their rate budget)",
    ["service"],
)
DEAD_LETTERS = Counter("nrm_dead_letters_total", "Dead letters written", ["service", "consumer"])
HANDLER_SECONDS = Histogram(
    "nrm_handler_seconds",
    "Time in a command or event handler",
    ["service", "kind", "name"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CONSUMER_PENDING = Gauge(
    "nrm_consumer_pending", "Events not yet delivered to a durable consumer", ["consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "nrm_consumer_ack_pending", "Events delivered but not yet acknowledged", ["consumer"]
)
LOOP_RESTARTS = Counter(
    "nrm_loop_restarts_total",
    "Consumer and background loops restarted after ending without a stop (alert on any)",
    ["service", "loop"],
)
READY = Gauge("nrm_service_ready", "1 when connected and consuming", ["service"])
# The audit writer's own figures (its throughput and lag are nrm_events_total and
# nrm_consumer_pending of audit-all / audit-rejections).
AUDIT_LEAVES = Gauge("nrm_audit_leaves", "Leaves in the audit log (its tree size)")
AUDIT_CHECKPOINT_SIZE = Gauge("nrm_audit_checkpoint_size", "Tree size of the newest checkpoint")
AUDIT_CHECKPOINT_SIGNED = Gauge(
    "nrm_audit_checkpoint_signed_timestamp_seconds",
    "When this instance last signed a checkpoint (alert on time() minus this)",
)
UNRESOLVED_DEAD_LETTERS = Gauge(
    "nrm_dead_letters_unresolved", "Dead letters not yet re-driven, by consumer", ["consumer"]
)


class Serving(Protocol):
    """What `/readyz` reports on: a service host, or (`nrm up --workers N`) one service
    across the worker processes that run it (services/workers.py)."""

    @property
    def service(self) -> str: ...

    @property
    def ready(self) -> bool: ...


def instance_id() -> str:
    """Which process answered: host name and PID, nothing about any person."""
    return f"{socket.gethostname()}:{os.getpid()}"


def register_ping(host: ServiceHost) -> None:
    """Answer `nrm.ctl.ping` (every instance, no queue group) with name and readiness."""

    async def on_ping(msg: NatsMessage) -> NatsResponse:
        body = {"service": host.service, "instance": instance_id(), "ready": host.ready}
        return NatsResponse(json.dumps(body).encode())

    host.broker.subscriber(PING_SUBJECT, title=f"ping:{host.service}")(on_ping)


async def poll_consumer_lag(host: ServiceHost, interval: float = LAG_POLL_SECONDS) -> None:
    """Consumer lag for this service's durables, for /metrics, every `interval` seconds."""
    durables = [d for d in every_durable() if d.service == host.service]
    while True:
        READY.labels(host.service).set(1 if host.ready else 0)
        for spec in durables:
            try:
                info = await host.runtime.jetstream.consumer_info(spec.stream, spec.durable)
            except (NatsError, TimeoutError, AssertionError):
                continue  # not connected yet, or a failover: the next poll sees it
            CONSUMER_PENDING.labels(spec.durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(spec.durable).set(info.num_ack_pending or 0)
        if durables:
            with contextlib.suppress(NatsError, TimeoutError, AssertionError):
                letters = await dead_letters(host.runtime.jetstream)
                for spec in durables:
                    unresolved = [d for d in letters if d.consumer == spec.durable]
                    count = sum(not d.resolved for d in unresolved)
                    UNRESOLVED_DEAD_LETTERS.labels(spec.durable).set(count)
        await asyncio.sleep(interval)


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def answer(path: str, hosts: Sequence[Serving]) -> bytes:
    """The HTTP response for one GET path (pure, so the routing is testable without I/O)."""
    if path == "/livez":
        return _response("200 OK", "text/plain", b"ok\n")
    if path == "/readyz":
        states = {h.service: h.ready for h in hosts}
        for service, ready in states.items():
            READY.labels(service).set(1 if ready else 0)
        ok = bool(states) and all(states.values())
        status = "200 OK" if ok else "503 Service Unavailable"
        return _response(status, "application/json", json.dumps(states).encode())
    if path == "/metrics":
        return _response("200 OK", CONTENT_TYPE_LATEST, generate_latest())
    return _response("404 Not Found", "text/plain", b"not found\n")


@contextlib.asynccontextmanager
async def health_server(settings: Settings, hosts: Sequence[Serving]) -> AsyncIterator[int]:
    """Serve /livez, /readyz and /metrics while the block runs; yields the bound port
    (0 when NRM_HEALTH_PORT is unset: no server)."""
    if not settings.health_port:
        yield 0
        return

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 and parts[0] == "GET" else ""
            writer.write(answer(path, hosts))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, settings.health_host, settings.health_port)
    port: int = server.sockets[0].getsockname()[1]
    log.info("health.serving", host=settings.health_host, port=port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()

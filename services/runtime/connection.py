"""How every process of the hub connects to NATS: one function, so services, bootstrap and
the CLI all reach a secured cluster (deploy/nats/) the same way.

Open (`nrm up --insecure`, and the tests' bare embedded servers): nothing is added. Secured
with nkeys (`nrm up`'s default): the role's seed `NRM_NATS_CREDENTIALS/<role>.nk` signs the
server's challenge. Secured with TLS (deploy/nats/): the CA in NRM_NATS_TLS_CA and, when
NRM_NATS_TLS_CERT/KEY are set, the client certificate whose e-mail SAN names this process's
NATS user. Either way replies then arrive under the role's own inbox prefix, the only
`_INBOX` subjects its user may subscribe to.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import nats
from faststream.nats.security import NatsNKey, NatsSecurity
from nats.aio.client import Client
from nats.errors import Error as NatsError

from services.runtime.permissions import inbox_prefix
from services.runtime.settings import Settings, nats_servers

# The role operator tools (bootstrap, status, dlq) connect as; services use their own name.
ADMIN_ROLE = "admin"


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.nats_tls_ca is None and settings.nats_tls_cert is None:
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.nats_tls_cert is not None and settings.nats_tls_key is not None:
        context.load_cert_chain(str(settings.nats_tls_cert), str(settings.nats_tls_key))
    return context


def connect_options(settings: Settings, role: str) -> dict[str, Any]:
    """Keyword arguments for `nats.connect(servers, ...)` and `NatsBroker(servers, ...)`."""
    options: dict[str, Any] = {"name": f"nrm-{role}"}
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    if settings.nats_credentials is not None:
        options["nkeys_seed"] = str(credential_file(settings.nats_credentials, role))
    if settings.authenticated:
        options["inbox_prefix"] = inbox_prefix(role)
    return options


def credential_file(directory: Path, role: str) -> Path:
    """The nkey seed a role connects with (`nrm up` writes one per user it knows)."""
    return directory / f"{role}.nk"


def broker_options(settings: Settings, role: str) -> dict[str, Any]:
    """`connect_options` as FastStream's NatsBroker takes them (TLS as `security=`)."""
    options = connect_options(settings, role)
    context = options.pop("tls", None)
    seed = options.pop("nkeys_seed", None)
    if seed is not None:
        options["security"] = NatsNKey.from_file(seed, ssl_context=context)
    elif context is not None:
        options["security"] = NatsSecurity(ssl_context=context)
    return options


# `nrm` exits with this when the hub's NATS cannot be reached (README, "Running it").
EXIT_UNREACHABLE = 3


class HubUnreachable(Exception):
    """NATS did not answer an operator command; the message names the URL, no traceback."""


async def _quiet(exc: Exception) -> None:
    """Connection errors are reported once, by the caller, not as a traceback per attempt."""


async def connect_operator(settings: Settings, url: str, role: str = ADMIN_ROLE) -> Client:
    """The one way an operator command (status, dlq, stats, audit, case, agency, demo)
    connects: a person is waiting, so a NATS that does not answer is reported within a few
    seconds (each server tried twice, 2 s per try), not retried for minutes."""
    try:
        return await nats.connect(
            nats_servers(url),
            connect_timeout=2,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            error_cb=_quiet,
            **connect_options(settings, role),
        )
    except (OSError, NatsError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise HubUnreachable(f"cannot reach NATS at {url} ({reason})") from None


async def flush_confirmed(nc: Client) -> None:
    """Return once the server has read everything this connection sent before the call:
    a subscription made just before is in place, a publish was received.

    `Client.flush()` alone does not promise that in nats-py 2.16: it writes its PING straight
    to the socket, while subscriptions and publishes wait in the client's buffer for its
    flusher task, so the PONG can come back before a SUB queued just before it is read
    (measured: a request from another connection then found no responders 5-9 times in
    500-2,000). One turn of the event loop lets the flusher write the buffer ahead of the
    PING (0 in 2,500)."""
    await asyncio.sleep(0)
    await nc.flush()

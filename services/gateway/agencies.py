"""The gateway's NATS side: one connection per agency, signed in with that agency's own
credentials (its nkey seed from `nrm up`, or its client certificate), so the server applies
the agency's permissions to everything the gateway does for it: nothing weaker than an
agency connecting itself. Connections are opened on the first request of each agency."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from services.runtime.connection import connect_options
from services.runtime.logging import get_logger
from services.runtime.permissions import inbox_prefix
from services.runtime.settings import Settings, nats_servers
from services.runtime.stored_messages import StoredMessage, read_feed

log = get_logger("nrm.gateway")


class AgencyUnreachable(Exception):
    """The gateway could not sign in to NATS as the agency (hub down, no credentials)."""


def agency_connect_options(settings: Settings, agency_id: str) -> dict[str, Any]:
    """How the gateway signs in as `agency_id`: its nkey seed (`NRM_NATS_CREDENTIALS/<agency>
    .nk`), or its client certificate from NRM_GATEWAY_AGENCY_CERTS."""
    options = connect_options(settings, agency_id)
    options["name"] = f"nrm-gateway-{agency_id}"
    certs = settings.gateway_agency_certs
    if certs is not None:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None,
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(
            str(Path(certs) / f"{agency_id}.pem"), str(Path(certs) / f"{agency_id}-key.pem")
        )
        options["tls"] = context
        options["inbox_prefix"] = inbox_prefix(agency_id)
    return options


class AgencyConnections:
    """One NATS connection per agency, and one feed reader at a time per agency (its feed
    consumer is named after it: two readers at once would fight over it)."""

    def __init__(self, settings: Settings, nats_url: str) -> None:
        self._settings = settings
        self._url = nats_url
        self._connections: dict[str, Client] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._feeds: dict[str, asyncio.Lock] = {}

    async def connection(self, agency_id: str) -> Client:
        lock = self._opening.setdefault(agency_id, asyncio.Lock())
        async with lock:
            nc = self._connections.get(agency_id)
            if nc is not None and not nc.is_closed:
                return nc
            try:
                nc = await nats.connect(
                    nats_servers(self._url),
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=_logged(agency_id),
                    **agency_connect_options(self._settings, agency_id),
                )
            except (OSError, NatsError, TimeoutError, ssl.SSLError) as exc:
                raise AgencyUnreachable(type(exc).__name__) from None
            self._connections[agency_id] = nc
            return nc

    def feed_lock(self, agency_id: str) -> asyncio.Lock:
        return self._feeds.setdefault(agency_id, asyncio.Lock())

    async def close(self) -> None:
        connections, self._connections = self._connections, {}
        for nc in connections.values():
            await nc.close()


def _logged(agency_id: str) -> Any:
    async def on_error(exc: Exception) -> None:
        # The error's type only: a permission violation's text would name a subject, which
        # holds ids only, but one line per kind is all an operator needs.
        log.warning("gateway.nats_error", agency_id=agency_id, error=type(exc).__name__)

    return on_error


async def read_feed_page(
    nc: Client, agency_id: str, after: int, limit: int, timeout: float = 5.0
) -> list[StoredMessage]:
    """Up to `limit` messages of the agency's feed after stream sequence `after`, oldest
    first, through the hub's one feed reader. The caller holds the feed lock."""
    return await read_feed(nc, agency_id, timeout, after=after, limit=limit)

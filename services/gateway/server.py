"""Serving the gateway: uvicorn with mutual TLS (a client certificate from the hub's CA is
required at the handshake), run inside `nrm run gateway` or `nrm up`, whose signal handling
stays theirs.

uvicorn does not hand the peer certificate to the app, so the HTTP protocol is uvicorn's own
h11 one with one addition: on each TLS connection it puts the verified peer certificate into
the ASGI scope's `state`, where the app reads the agency from it (identity.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.agencies.registry import load_registry
from services.gateway.agencies import AgencyConnections
from services.gateway.app import PEER_CERTIFICATE, Gateway, create_app
from services.runtime.logging import get_logger
from services.runtime.settings import Settings, SettingsError

log = get_logger("nrm.gateway")


class CertificateH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the peer certificate in every request's scope state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        # app_state is copied into each request's scope["state"]; this copy is this
        # connection's own, so no other connection sees its certificate.
        self.app_state = {**self.app_state, PEER_CERTIFICATE: peer}


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # `nrm run`/`nrm up` own SIGINT and SIGTERM, and stop the gateway themselves


def _tls_1_2_or_later(
    config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def tls_files(settings: Settings) -> tuple[str, str, str]:
    """The server certificate, its key and the agencies' CA: all three, or no gateway."""
    cert, key, ca = settings.gateway_tls_cert, settings.gateway_tls_key, settings.gateway_tls_ca
    if cert is None or key is None or ca is None:
        raise SettingsError(
            "the gateway serves mutual TLS only: set NRM_GATEWAY_TLS_CERT, NRM_GATEWAY_TLS_KEY "
            "and NRM_GATEWAY_TLS_CA (docs/GATEWAY.md)"
        )
    return str(cert), str(key), str(ca)


class ListenFailed(Exception):
    """uvicorn could not start (a port in use): it calls sys.exit, caught here."""


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:  # would otherwise escape the event loop and end the whole process
        raise ListenFailed() from None


@dataclass
class RunningGateway:
    server: uvicorn.Server
    task: asyncio.Task[None]
    connections: AgencyConnections
    host: str
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=10)
        except (TimeoutError, ListenFailed):
            self.task.cancel()
        finally:
            await self.connections.close()


async def start_gateway(
    settings: Settings, nats_url: str, **gateway_options: Any
) -> RunningGateway:
    """Listen on NRM_GATEWAY_HOST:NRM_GATEWAY_PORT (mutual TLS) and act for the agencies on
    the hub at `nats_url`. Returns once it accepts connections."""
    cert, key, ca = tls_files(settings)
    registry = load_registry(settings.agency_registry, settings.country)
    connections = AgencyConnections(settings, nats_url)
    app = create_app(Gateway(registry, connections, **gateway_options))
    config = uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        http=CertificateH11Protocol,
        lifespan="off",
        log_config=None,
        access_log=False,  # RequestLog writes one line per request, without the raw path
        server_header=False,
        proxy_headers=False,  # the client is the TLS peer, never a header's claim
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_ca_certs=ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        ssl_context_factory=_tls_1_2_or_later,
        timeout_graceful_shutdown=2,  # open feed streams end; clients resume by cursor
    )
    server = _Server(config)
    task: asyncio.Task[None] = asyncio.create_task(_serve(server))
    while not server.started:
        if task.done():
            await connections.close()
            if not task.cancelled():
                task.exception()  # retrieved: reported below, not as "never retrieved"
            raise SettingsError(
                f"the gateway could not listen on {settings.gateway_host}:{settings.gateway_port}"
            )
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    log.info("gateway.listening", host=settings.gateway_host, port=port)
    return RunningGateway(server, task, connections, settings.gateway_host, port)


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, nats_url: str
) -> AsyncIterator[RunningGateway | None]:
    """`nrm up`'s gateway: started when its TLS files are set (NRM_GATEWAY_TLS_CERT), else
    none (a hub without agencies over HTTPS needs no listening port)."""
    if settings.gateway_tls_cert is None:
        yield None
        return
    gateway = await start_gateway(settings, nats_url)
    try:
        yield gateway
    finally:
        await gateway.stop()

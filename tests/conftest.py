"""Fixtures that start real nats-server processes on free loopback ports and stop them by
PID, and run the hub's services in the test's event loop against them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from services.bootstrap import bootstrap, local_hub, running_services
from services.client import HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.embedded import EmbeddedNats
from services.runtime.settings import Settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="run the fault tests with ten times the load (minutes instead of seconds)",
    )


@pytest.fixture
def load_factor(request: pytest.FixtureRequest) -> int:
    """How many times the default number of cases a fault test pushes through."""
    return 10 if request.config.getoption("--soak") else 1


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A fresh JetStream server in this test's tmp_path, on a free port, stopped by PID."""
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nats_url(nats_server: EmbeddedNats) -> str:
    """The URL of `nats_server`, for tests that only need somewhere to connect."""
    return nats_server.url


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats) -> Settings:
    settings = Settings(
        nats_url=nats_server.url,
        data_dir=tmp_path,
        max_deliver=3,
        retry_backoff_seconds=(0.05, 0.1),
        deadline_sweep_seconds=0.2,
        checkpoint_interval_seconds=0.5,
    )
    create_hub_keys(settings)
    return settings


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, name="test")
    try:
        yield client
    finally:
        await client.drain()


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Settings]:
    """All four services running against a freshly bootstrapped server."""
    assert settings.nats_url is not None
    await bootstrap(settings.nats_url, settings)
    async with running_services(settings.nats_url, settings):
        yield settings


@pytest.fixture
def client(nc: Client) -> HubClient:
    return HubClient(nc)


@pytest.fixture
async def secured_hub(tmp_path: Path) -> AsyncIterator[Settings]:
    """`nrm up`'s default, in this process: an embedded server that admits only the hub's
    nkey users (seeds in `DATA_DIR/credentials`), and all services signed in as themselves."""
    data = tmp_path / "secured"
    local = Settings(
        data_dir=data,
        nats_credentials=data / "credentials",
        max_deliver=3,
        retry_backoff_seconds=(0.05, 0.1),
        deadline_sweep_seconds=0.2,
        checkpoint_interval_seconds=0.5,
    )
    create_hub_keys(local)
    async with local_hub(local) as url:
        settings = local.model_copy(update={"nats_url": url})
        async with running_services(url, settings):
            yield settings

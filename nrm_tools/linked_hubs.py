"""Several country hubs on loopback, each its own nats-server (JetStream domain = country),
keys and registry, linked by leaf connections with one account per country pair: what
`nrm demo --cross-border` and the cross-border integration tests run.

The first country accepts leaf connections; the others dial it (a star, like the deployment
in deploy/nats/crossborder/). Each registry copy gets the peers' public keys, as the
countries would exchange them out of band.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.public_key_sealing import public_key_b64, read_private_key
from services.agencies.registry import load_registry
from services.bootstrap import RunningService, bootstrap, running_services
from services.runtime.case_keys import create_hub_keys
from services.runtime.crossborder_nats import crossborder_config
from services.runtime.embedded import EmbeddedNats, free_port
from services.runtime.settings import Settings


@dataclass
class CountryHub:
    country: str
    settings: Settings
    server: EmbeddedNats

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class LinkedHubs:
    base_dir: Path
    countries: Sequence[str] = ("kg", "kz", "uz")
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    # A dialing country may dial another port than the centre's leaf port (a test's proxy
    # in between, to cut the link while both hubs run).
    dial_ports: dict[str, int] = field(default_factory=dict)
    hubs: dict[str, CountryHub] = field(default_factory=dict)
    leaf_port: int = 0

    def __getitem__(self, country: str) -> CountryHub:
        return self.hubs[country]

    def _prepare(self) -> None:
        centre, *others = self.countries
        self.leaf_port = leaf_port = free_port()
        passwords = {other: secrets.token_hex(16) for other in others}
        settings: dict[str, Settings] = {}
        for country in self.countries:
            data_dir = self.base_dir / country
            settings[country] = Settings(
                country=country,
                data_dir=data_dir,
                agency_registry=data_dir / "registry.json",
                **self.settings_overrides,
            )
            create_hub_keys(settings[country])
        keys = {
            c: public_key_b64(read_private_key(s.intake_private_key_file).public_key())
            for c, s in settings.items()
        }
        for country, s in settings.items():
            registry = load_registry(country=country).model_dump(mode="json")
            registry["peers"] = [
                {**peer, "public_key": keys[peer["country"]]}
                for peer in registry["peers"]
                if peer["country"] in self.countries
            ]
            assert s.agency_registry is not None
            s.agency_registry.write_text(json.dumps(registry, indent=2))
            if country == centre:
                peers: list[str] = list(others)
                config = crossborder_config(
                    country, peers, passwords, secrets.token_hex(16), f"127.0.0.1:{leaf_port}"
                )
            else:
                config = crossborder_config(
                    country,
                    [centre],
                    {centre: passwords[country]},
                    secrets.token_hex(16),
                    dial={centre: f"127.0.0.1:{self.dial_ports.get(country, leaf_port)}"},
                )
            server = EmbeddedNats(
                s.data_dir / "nats",
                server_name=f"nrm-{country}",
                jetstream_domain=country,
                extra_config=config,
            )
            self.hubs[country] = CountryHub(country, s, server)

    async def start(self) -> None:
        self._prepare()
        for country in self.countries:
            hub = self.hubs[country]
            url = await hub.server.start()
            hub.settings = hub.settings.model_copy(update={"nats_url": url})
            await bootstrap(url, hub.settings)

    def stop(self) -> None:
        for hub in reversed(list(self.hubs.values())):
            hub.server.stop()

    @contextlib.asynccontextmanager
    async def services(self) -> AsyncIterator[dict[str, list[RunningService]]]:
        """Every country's services, in this process."""
        async with contextlib.AsyncExitStack() as stack:
            running = {}
            for country, hub in self.hubs.items():
                assert hub.settings.nats_url is not None
                running[country] = await stack.enter_async_context(
                    running_services(hub.settings.nats_url, hub.settings)
                )
            yield running

    async def __aenter__(self) -> LinkedHubs:
        try:
            await self.start()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

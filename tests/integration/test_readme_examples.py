"""The Python examples in the README run as written against a real hub."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from contracts.public_key_sealing import generate_private_key, write_private_key
from contracts.vocabulary import PersonalField
from services.client import AgencyClient, HubClient
from services.runtime.connection import ADMIN_ROLE, connect_options
from services.runtime.settings import Settings, nats_servers
from tests.integration.test_confidentiality import REGISTRAR, SHELTER, identified_case

pytestmark = pytest.mark.integration
README = Path(__file__).parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.S)


async def run_block(code: str, namespace: dict[str, Any]) -> None:
    """Run a README block; top-level `await` is allowed, as in a notebook or asyncio REPL."""
    compiled = compile(code, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if result is not None:
        await result


async def test_the_readme_python_examples_run(
    secured_hub: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against `nrm up`'s default (nkey users, per-agency subjects), as the README says."""
    hub = secured_hub
    assert hub.nats_url is not None and hub.nats_credentials is not None
    submit_block, access_block = python_blocks()
    namespace: dict[str, Any] = {}
    monkeypatch.chdir(README.parent)  # the example opens contracts/examples/... from the repo
    await run_block(submit_block, namespace)
    reply = await namespace["submit"](hub.nats_url, str(hub.nats_credentials))
    assert reply["status"] == "accepted", reply

    servers = nats_servers(hub.nats_url)

    async def connect_as(role: str) -> Client:
        return await nats.connect(servers, **connect_options(hub, role))

    admin = await connect_as(ADMIN_ROLE)
    client = HubClient(admin, connect_as=connect_as)
    try:
        key_file = tmp_path / "shelter.key"
        private_key = generate_private_key()
        write_private_key(private_key, key_file)
        registered = await client.register_agency_key(REGISTRAR, SHELTER, private_key.public_key())
        assert registered["status"] == "accepted"
        case_id = await identified_case(admin, client)
        shelter_nc = await client.connection_for(SHELTER)
        namespace = {"nc": shelter_nc, "path": key_file, "case_id": case_id}
        await run_block(access_block, namespace)
        assert isinstance(namespace["shelter"], AgencyClient)
        assert PersonalField.FULL_NAME in namespace["fields"]
    finally:
        await client.close()
        await admin.close()

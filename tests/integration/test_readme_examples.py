"""The Python examples in the README run as written against a real hub."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.public_key_sealing import generate_private_key, write_private_key
from contracts.vocabulary import PersonalField
from services.client import AgencyClient, HubClient
from services.runtime.settings import Settings
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
    hub: Settings,
    client: HubClient,
    nc: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    submit_block, access_block = python_blocks()
    assert hub.nats_url is not None
    namespace: dict[str, Any] = {}
    monkeypatch.chdir(README.parent)  # the example opens contracts/examples/... from the repo
    await run_block(submit_block, namespace)
    reply = await namespace["submit"](hub.nats_url)
    assert reply["status"] == "accepted", reply

    key_file = tmp_path / "shelter.key"
    private_key = generate_private_key()
    write_private_key(private_key, key_file)
    registered = await client.register_agency_key(REGISTRAR, SHELTER, private_key.public_key())
    assert registered["status"] == "accepted"
    case_id = await identified_case(nc, client)
    namespace = {"nc": nc, "path": key_file, "case_id": case_id}
    await run_block(access_block, namespace)
    assert isinstance(namespace["shelter"], AgencyClient)
    assert PersonalField.FULL_NAME in namespace["fields"]

"""The handler-test example in docs/ARCHITECTURE.md ("How to test a handler without a server")
runs as written, on in-memory ports: if the seams it shows change, this fails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ARCHITECTURE = Path(__file__).parents[2] / "docs" / "ARCHITECTURE.md"
MARKER = "<!-- exercised by tests/unit/test_architecture_example.py -->"


def example() -> str:
    text = ARCHITECTURE.read_text("utf-8")
    found = re.search(re.escape(MARKER) + r"\n```python\n(.*?)```", text, flags=re.S)
    assert found, "the example block is gone from docs/ARCHITECTURE.md"
    return found.group(1)


async def test_the_handler_test_example_runs(tmp_path: Path) -> None:
    code = compile(example(), str(ARCHITECTURE), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace = {"tmp_path": tmp_path}
    result = eval(code, namespace)  # the block has top-level awaits: a coroutine to await
    assert result is not None
    await result
    assert namespace["outcome"].event_ids  # it ran to the end

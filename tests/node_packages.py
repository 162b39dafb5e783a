"""The Node.js side of the test suite (tests/node/): the official AsyncAPI parser and an
example agency in JavaScript. Its packages are pinned in tests/node/package-lock.json and
installed here with `npm ci` from the npm registry when missing or stale, so a clean clone
needs only node and npm."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"
LOCK = NODE_DIR / "package-lock.json"
# npm writes this copy of the lock when it installs: newer than the lock means up to date.
INSTALLED = NODE_DIR / "node_modules" / ".package-lock.json"


def node_ready() -> str:
    """The node binary, with tests/node's packages installed (`npm ci` once, under a file
    lock so parallel sessions do not install over each other)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise AssertionError("node and npm (Node.js 20 or later) are needed by these tests")
    with (NODE_DIR / ".install-lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not INSTALLED.exists() or INSTALLED.stat().st_mtime < LOCK.stat().st_mtime:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


def run_node(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node_ready(), script, *args],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def json_lines(output: str) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]

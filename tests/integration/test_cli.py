"""`nrm up` and `nrm demo` as a person runs them: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    return env


def test_up_prints_ready_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*NRM, "up", "--data", str(tmp_path / "var")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("NRM hub ready nats://127.0.0.1:"), line
        url_file = tmp_path / "var" / "hub.url"
        assert url_file.read_text().strip() == line.removeprefix("NRM hub ready ")
        assert "nats-server" in _processes_using(tmp_path)  # the embedded server is up
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not url_file.exists()
        assert "nats-server" not in _processes_using(tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()


def _processes_using(path: Path) -> str:
    """Command lines of live processes that mention `path` (the embedded server would)."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return "\n".join(found)


def test_demo_runs_every_expected_outcome(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*NRM, "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " 0 did not." in result.stdout
    assert "Demo Person" not in result.stdout + result.stderr  # names are never printed
    print(f"demo took {time.monotonic() - started:.1f}s")

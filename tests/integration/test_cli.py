"""`nrm up` and `nrm demo` as a person runs them: real processes, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from services.client import HubClient
from services.runtime.case_keys import create_hub_keys
from services.runtime.connection import EXIT_UNREACHABLE
from services.runtime.embedded import EmbeddedNats
from services.runtime.settings import Settings
from tests.integration.hub_reads import screening

pytestmark = pytest.mark.integration
NRM = [sys.executable, "-m", "services.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[2])
    return env


@contextlib.contextmanager
def _nrm_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`nrm up` on a private data dir, with the line it printed when ready; killed if the
    test leaves it running."""
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
        assert "nats-server" in _processes_using(tmp_path)  # the embedded server is up
        yield proc, line
    finally:
        if proc.poll() is None:
            proc.kill()


def test_up_prints_ready_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with _nrm_up(tmp_path) as (proc, line):
        assert line.startswith("NRM hub ready nats://127.0.0.1:"), line
        url_file = tmp_path / "var" / "hub.url"
        assert url_file.read_text().strip() == line.removeprefix("NRM hub ready ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not url_file.exists()
        assert "nats-server" not in _processes_using(tmp_path)


def test_kill_9_of_up_leaves_no_nats_server_behind(tmp_path: Path) -> None:
    with _nrm_up(tmp_path) as (proc, line):
        assert line.startswith("NRM hub ready")
        proc.kill()  # SIGKILL: nothing of nrm up runs after this
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while "nats-server" in _processes_using(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "nats-server" not in _processes_using(tmp_path)


OPERATOR_COMMANDS = (
    ["status"],
    ["dlq", "list"],
    ["dlq", "retry", "1"],
    ["stats"],
    ["audit", "export", "--out", "bundle"],
    ["demo"],
    [
        "case",
        "erase",
        "3f0c5b0e-7a4c-4d1e-9b7a-2a4f2c1d9e11",
        "--agency",
        "kg-coordinating-body",
        "--reason",
        "erasure_request",
    ],
)


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=" ".join)
def test_operator_commands_say_in_one_line_that_nats_is_unreachable(
    tmp_path: Path, command: list[str]
) -> None:
    dead = "nats://127.0.0.1:1"  # nothing listens on port 1
    started = time.monotonic()
    done = subprocess.run(
        [*NRM, *command, "--nats-url", dead],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    took = time.monotonic() - started  # a figure for the failure message, not a benchmark
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert f"cannot reach NATS at {dead}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert took < 10, f"took {took:.1f} s"


def test_version() -> None:
    done = subprocess.run([*NRM, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("nrm ")


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


async def test_bootstrap_and_run_one_service_as_a_container_would(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    env = {**_env(tmp_path), "NRM_NATS_URL": nats_server.url, "NRM_DATA_DIR": str(tmp_path)}
    missing_key = subprocess.run(
        [*NRM, "run", "identifier"], capture_output=True, text=True, env=env, timeout=60
    )
    assert missing_key.returncode == 2
    assert "key-encryption key" in missing_key.stderr
    boot = subprocess.run([*NRM, "bootstrap"], capture_output=True, text=True, env=env, timeout=60)
    assert boot.returncode == 0, boot.stderr
    create_hub_keys(Settings(data_dir=tmp_path))
    proc = subprocess.Popen(
        [*NRM, "run", "identifier"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("NRM identifier consuming")
        nc = await nats.connect(nats_server.url)
        reply = await HubClient(nc).send(screening())
        await nc.close()
        assert reply["status"] == "accepted"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()

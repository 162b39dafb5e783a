"""Hub services as separate OS processes, for tests that kill them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path


def start_service(name: str, url: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env.update(
        PYTHONPATH=str(Path(__file__).parents[2]),
        NRM_NATS_URL=url,
        NRM_DATA_DIR=str(data_dir),
        NRM_MAX_DELIVER="5",
        NRM_RETRY_BACKOFF_SECONDS="0.1,0.2",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


async def wait_consuming(proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    assert "consuming" in line, line


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

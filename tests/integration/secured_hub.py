"""A secured hub as ops deploy it: nats-server processes running the configs in deploy/nats/
(TLS with client certificates, accounts, per-user permissions), on free loopback ports, with
certificates from deploy/scripts/dev-certs.py in a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.embedded import READY_MARK, free_port, nats_server_binary
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NATS_CONFIGS = DEPLOY / "nats"
DEV_CERTS = DEPLOY / "scripts" / "dev-certs.py"


def make_certs(
    out: Path, nodes: list[str], country: str = "kg", registry: Path | None = None
) -> Path:
    """Run the dev-certs script as ops would, into `out` (a CA of `country`'s own)."""
    extra = ["--registry", str(registry)] if registry is not None else []
    subprocess.run(
        [
            sys.executable,
            str(DEV_CERTS),
            str(out),
            "--nodes",
            ",".join(nodes),
            "--country",
            country,
            *extra,
        ],
        check=True,
        capture_output=True,
    )
    return out


def node_env(
    certs: Path,
    node: str,
    ports: dict[str, int],
    routes: list[int],
    store: Path,
) -> dict[str, str]:
    """The environment deploy/nats/hub.conf reads, for one node on loopback."""
    # By name, as compose names nats-1..3: a route's certificate must name a route URL
    # (hub.conf), and every dev-certs node certificate names localhost.
    route_list = ", ".join(f"nats-route://localhost:{p}" for p in routes)
    return {
        "NATS_SERVER_NAME": node,
        "NATS_CLIENT_LISTEN": f"127.0.0.1:{ports['client']}",
        "NATS_MONITOR_LISTEN": f"127.0.0.1:{ports['monitor']}",
        "NATS_CLUSTER_LISTEN": f"127.0.0.1:{ports['cluster']}",
        "NATS_ROUTES": f"[{route_list}]",
        "NATS_LEAF_LISTEN": f"127.0.0.1:{ports['leaf']}",
        "NATS_STORE_DIR": str(store),
        "NATS_CA_FILE": str(certs / "ca.pem"),
        "NATS_CERT_FILE": str(certs / "nodes" / f"{node}.pem"),
        "NATS_KEY_FILE": str(certs / "nodes" / f"{node}-key.pem"),
    }


def leaf_env(certs: Path, hub_leaf_port: int, peer: str = "kz") -> dict[str, str]:
    """The environment deploy/nats/leaf-remote.conf reads: a peer hub dialling ours."""
    return {
        "NATS_LEAF_REMOTES": f"[tls://127.0.0.1:{hub_leaf_port}]",
        "NATS_LEAF_CERT_FILE": str(certs / "users" / f"leaf-{peer}.pem"),
        "NATS_LEAF_KEY_FILE": str(certs / "users" / f"leaf-{peer}-key.pem"),
    }


@dataclass
class SecuredNode:
    name: str
    env: dict[str, str]
    log: Path
    config: Path
    # A hub node's cluster is named nrm-<country> (leaf links need distinct names); a node
    # that is not in a hub's cluster (a peer's leaf) has none.
    country: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_port(self) -> int:
        return int(self.env["NATS_CLIENT_LISTEN"].rsplit(":", 1)[1])

    @property
    def leaf_port(self) -> int:
        return int(self.env["NATS_LEAF_LISTEN"].rsplit(":", 1)[1])

    @property
    def monitor_port(self) -> int:
        return int(self.env["NATS_MONITOR_LISTEN"].rsplit(":", 1)[1])

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(nats_server_binary()),
                    "-c",
                    str(self.config),
                    *(["--cluster_name", f"nrm-{self.country}"] if self.country else []),
                ],
                stdout=log,
                stderr=log,
                env={**os.environ, **self.env},
                start_new_session=True,
            )

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
        return READY_MARK in self.log.read_text(errors="replace")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


@dataclass
class SecuredCluster:
    """Three nodes of deploy/nats/hub.conf with generated certificates, all on loopback.
    Another country's hub: its `country`, `registry` (for its certificates) and a
    `config_dir` holding hub.conf with that country's generated files; `extra_env` for its
    leaf remotes."""

    base: Path
    size: int = 3
    country: str = "kg"
    registry: Path | None = None
    config_dir: Path = NATS_CONFIGS
    extra_env: dict[str, str] = field(default_factory=dict)
    certs: Path = field(init=False)
    nodes: list[SecuredNode] = field(init=False)

    def __post_init__(self) -> None:
        names = [f"nats-{i + 1}" for i in range(self.size)]
        # The gateway's server certificate too, as dev-certs.py makes it by default.
        nodes = [*names, "gateway"]
        self.certs = make_certs(self.base / "certs", nodes, self.country, self.registry)
        self._place(names)

    def _place(self, names: list[str]) -> None:
        """Free loopback ports for every node (again after a port was taken meanwhile)."""
        ports = [{k: free_port() for k in ("client", "monitor", "cluster", "leaf")} for _ in names]
        self.nodes = []
        for i, name in enumerate(names):
            peers = [p["cluster"] for j, p in enumerate(ports) if j != i]
            store = self.base / name / "js"
            env = node_env(self.certs, name, ports[i], peers, store)
            env.update(self.extra_env)
            (self.base / name).mkdir(parents=True, exist_ok=True)
            config = self.config_dir / "hub.conf"
            self.nodes.append(
                SecuredNode(name, env, self.base / name / "nats.log", config, self.country)
            )

    @property
    def url(self) -> str:
        return ",".join(f"tls://127.0.0.1:{n.client_port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> str:
        """Start every node; a port another process took between choosing and binding it
        (free_port only finds one free now) means new ports and another try. A node that
        fails otherwise stops the others before the error is raised: none is left behind."""
        for attempt in range(3):
            for node in self.nodes:
                node.log.unlink(missing_ok=True)  # a failed try's "ready" line must not count
                node.start()
            deadline = time.monotonic() + timeout
            try:
                while not all(node.ready() for node in self.nodes):
                    if time.monotonic() > deadline:
                        raise RuntimeError("secured cluster not ready in time")
                    time.sleep(0.05)
            except RuntimeError as exc:
                self.stop()
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self._place([node.name for node in self.nodes])
                continue
            return self.url
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def user_cert(self, role: str) -> tuple[Path, Path]:
        return self.certs / "users" / f"{role}.pem", self.certs / "users" / f"{role}-key.pem"

    def settings(self, role: str, data_dir: Path, **overrides: object) -> Settings:
        """Settings for a process that connects as `role` (a service name or `admin`)."""
        cert, key = self.user_cert(role)
        return Settings(
            nats_url=self.url,
            data_dir=data_dir,
            nats_tls_ca=self.certs / "ca.pem",
            nats_tls_cert=cert,
            nats_tls_key=key,
            **overrides,  # type: ignore[arg-type]
        )

    def violations(self) -> str:
        """Every permission violation the servers logged (for failure messages)."""
        return "\n".join(
            line
            for node in self.nodes
            for line in node.log.read_text(errors="replace").splitlines()
            if "Violation" in line
        )

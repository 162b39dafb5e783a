"""What ops deploy is checked here, as far as this machine allows (no container engine, no
Kubernetes): every NATS config passes `nats-server -t`; compose.yaml, the Helm values and the
manifests parse and hold the structure the hub needs; the image's entrypoint runs each
service outside a container until it is ready; a bad or missing setting stops a service
with an error naming it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.agencies.registry import load_registry
from services.runtime.embedded import EmbeddedNats, free_port, nats_server_binary
from services.runtime.permissions import hub_auth, rendered
from services.runtime.service_table import SERVICES, TABLE, Key
from services.runtime.settings import ENV_PREFIX, Settings
from tests.integration.secured_hub import DEPLOY, NATS_CONFIGS, leaf_env, make_certs, node_env

pytestmark = pytest.mark.integration
ENTRYPOINT = DEPLOY / "entrypoint.sh"
MAIN_CONFIGS = ("hub.conf", "hub-single-node.conf", "leaf-remote.conf")
SETTING_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
ALL_SERVICES = set(SERVICES)
KEY_SETTINGS = {key.value for key in Key}
ROLES = {*ALL_SERVICES, "admin"}
GATEWAY = "gateway"  # `nrm run gateway`: deployed beside the services, not one of them


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"), ["nats-1", "nats-2", "nats-3"])


def _test_config(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("name", MAIN_CONFIGS)
def test_nats_server_accepts_each_config(certs: Path, tmp_path: Path, name: str) -> None:
    ports = {k: free_port() for k in ("client", "monitor", "cluster", "leaf")}
    env = node_env(certs, "nats-1", ports, [free_port()], tmp_path / "js")
    env.update(leaf_env(certs, ports["leaf"]))
    result = _test_config(NATS_CONFIGS / name, env)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout + result.stderr


def test_nats_server_refuses_a_config_with_a_missing_certificate(
    certs: Path, tmp_path: Path
) -> None:
    """The check above can fail: `-t` really loads the TLS material."""
    ports = {k: free_port() for k in ("client", "monitor", "cluster", "leaf")}
    env = node_env(certs, "nats-1", ports, [free_port()], tmp_path / "js")
    env["NATS_CERT_FILE"] = str(tmp_path / "missing.pem")
    assert _test_config(NATS_CONFIGS / "hub.conf", env).returncode != 0


def test_every_nats_file_is_a_tested_config_or_included_by_one() -> None:
    included: set[str] = set()
    for name in MAIN_CONFIGS:
        included |= set(re.findall(r'include\s+"([^"]+)"', (NATS_CONFIGS / name).read_text()))
    files = {p.name for p in NATS_CONFIGS.glob("*.conf")}
    assert files == set(MAIN_CONFIGS) | included, files


def test_generated_accounts_match_the_registry_and_permissions() -> None:
    for name, text in rendered(hub_auth(load_registry())).items():
        assert (NATS_CONFIGS / name).read_text() == text, (
            f"{name} is stale: run python -m services.runtime.permissions"
        )


def test_no_secret_is_committed_under_deploy() -> None:
    generated = (DEPLOY / "certs", DEPLOY / "secrets")  # git-ignored bring-up output
    for path in DEPLOY.rglob("*"):
        if (
            path.is_file()
            and not path.is_relative_to(generated[0])
            and not path.is_relative_to(generated[1])
        ):
            text = path.read_text(errors="replace")
            assert "PRIVATE KEY-----" not in text, path
            # A secret given by reference ($VARIABLE, set at run time) is not committed.
            literal = r"\b(password|pass|token)\s*[:=](?!\s*\$)"
            assert not re.search(literal, text, re.I), path


# --- compose -----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def _conf_variables(name: str) -> set[str]:
    return set(re.findall(r"\$(NATS_[A-Z_]+)", (NATS_CONFIGS / name).read_text()))


def test_compose_file_holds_together() -> None:
    """A structural check standing in for `docker compose config` (no engine here): top-level
    keys of the Compose specification, every reference resolves, the cluster is set up the way
    deploy/README.md says."""
    compose = _compose()
    allowed_top = {"name", "services", "networks", "volumes", "secrets", "configs"}
    assert {k for k in compose if not k.startswith("x-")} <= allowed_top
    services: dict[str, dict[str, Any]] = compose["services"]
    nodes = {n: s for n, s in services.items() if n.startswith("nats-")}
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on", {}):
            assert dep in services, (name, dep)
        for net in service.get("networks", []):
            assert net in compose["networks"], (name, net)
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], (name, source)
            else:
                assert (DEPLOY / source).resolve().is_relative_to(DEPLOY), (name, source)
    for name, node in nodes.items():
        assert re.fullmatch(r"nats:\d+\.\d+\.\d+-alpine", node["image"]), node["image"]
        # the country's own cluster name: leaf links between two same-named clusters fail
        assert node["command"] == ["--config", "/etc/nats/nrm/hub.conf", "--cluster_name", "nrm-kg"]
        assert node["stop_signal"] == "SIGUSR2"  # lame duck
        assert "healthz?js-enabled-only=true" in " ".join(node["healthcheck"]["test"])
        env = node["environment"]
        assert _conf_variables("hub.conf") <= set(env), name
        assert env["NATS_MONITOR_LISTEN"].startswith("127.0.0.1:")
        assert env["NATS_SERVER_NAME"] == name
        assert any(v.endswith(":/data") for v in node["volumes"])
        assert any(v.startswith("./nats:") for v in node["volumes"])
    assert "sync_interval: always" in (NATS_CONFIGS / "hub.conf").read_text()
    runs = {}
    for name, service in services.items():
        if name in nodes:
            continue
        env = service["environment"]
        assert set(env) <= SETTING_NAMES, (name, set(env) - SETTING_NAMES)
        assert env["NRM_NATS_URL"].startswith("tls://")
        if name == GATEWAY:
            # No NATS identity of its own: it signs in as each agency (docs/GATEWAY.md).
            assert "NRM_NATS_TLS_CERT" not in env and "NRM_NATS_TLS_KEY" not in env
            assert env["NRM_GATEWAY_AGENCY_CERTS"] == "/run/nrm/certs/agencies"
            port = env["NRM_GATEWAY_PORT"]
            assert service["ports"] == [f"{port}:{port}"]
            role = GATEWAY
        else:
            cert = env["NRM_NATS_TLS_CERT"]
            role = Path(cert).name.removesuffix(".pem")
            assert role in ROLES, (name, role)
            assert env["NRM_NATS_TLS_KEY"].endswith(f"/{role}-key.pem")
        if service["command"][0] == "run":
            runs[service["command"][1]] = role
            assert "healthcheck" in service and "/readyz" in " ".join(
                service["healthcheck"]["test"]
            )
            assert service["depends_on"] == {
                "bootstrap": {"condition": "service_completed_successfully"}
            }
        assert service.get("read_only") is True and service.get("cap_drop") == ["ALL"]
    assert runs == {s: s for s in (*ALL_SERVICES, GATEWAY)}, runs


def test_each_container_mounts_only_the_certificates_it_names() -> None:
    """Least privilege for the TLS keys, as for the secrets: a container gets the CA and the
    certificate files its own settings name, nothing else. Before, every service mounted the
    whole certificate directory, so a compromised identifier held admin's key and every
    agency's. The gateway gets `agencies/` (dev-certs.py's copy of the agencies' alone)."""
    for name, service in _compose()["services"].items():
        env = {str(v) for v in service.get("environment", {}).values()}
        for inside in ("/etc/nats/certs/", "/run/nrm/certs/"):
            named = {v for v in env if v.startswith(inside)}
            mounted = {}
            for volume in service.get("volumes", []):
                source, target, *mode = volume.split(":")
                if target.startswith(inside):
                    mounted[target] = source
                    assert mode == ["ro"], (name, volume)
            assert set(mounted) == named, (name, set(mounted) ^ named)
            for target, source in mounted.items():  # the same file, not another's
                assert source == "./certs/" + target.removeprefix(inside), (name, source)


# --- image -------------------------------------------------------------------------------


def test_dockerfile_is_pinned_non_root_and_uses_the_entrypoint() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), base
    assert "FROM ${PYTHON_IMAGE}" in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'ENTRYPOINT ["nrm-entrypoint"]' in text
    assert "COPY deploy/entrypoint.sh /usr/local/bin/nrm-entrypoint" in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (DEPLOY.parent / source).exists(), source
    assert os.access(ENTRYPOINT, os.X_OK)


def test_the_image_installs_exact_locked_versions_that_satisfy_pyproject() -> None:
    """deploy/requirements.lock pins every dependency of the hub with hashes, each within
    pyproject.toml's bounds, and the Dockerfile installs from it and nothing else."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    lock = (DEPLOY / "requirements.lock").read_text()
    pinned = {
        m.group(1).lower().replace("_", "-"): Version(m.group(2))
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.M)
    }
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", lock, flags=re.M)[1:]
    assert all("--hash=sha256:" in block for block in blocks)
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        wanted = Requirement(line)
        name = wanted.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in deploy/requirements.lock: run make lock"
        assert wanted.specifier.contains(pinned[name]), (name, str(pinned[name]))
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-compile --no-deps ." in dockerfile


def test_compose_and_kubernetes_give_each_service_exactly_the_keys_it_declares() -> None:
    """runtime/service_table.py says which key files a service reads; a deployment that mounts
    fewer stops it (or a cross-border path) at run time, one that mounts more leaks."""
    services = _compose()["services"]
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "hub.yaml").read_text()) if d]
    for entry in TABLE:
        declared = {key.value for key in entry.keys}
        composed = {k for k in services[entry.name].get("environment", {}) if k in KEY_SETTINGS}
        assert composed == declared, ("compose", entry.name)
        (deployment,) = [d for d in docs if d["metadata"]["name"] == f"nrm-{entry.name}"]
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        kubernetes = {e["name"] for e in env if e["name"] in KEY_SETTINGS}
        assert kubernetes == declared, ("kubernetes", entry.name)


# --- Kubernetes --------------------------------------------------------------------------


def test_kubernetes_manifests_parse_and_run_every_service_safely() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "hub.yaml").read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {f"nrm-{s}" for s in (*ALL_SERVICES, GATEWAY)}
    assert [d["kind"] for d in docs].count("Job") == 1
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["namespace"] == "nrm"
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert {e["name"] for e in container["env"]} <= SETTING_NAMES
            assert {m["name"] for m in container["volumeMounts"]} <= volumes
            if doc["kind"] == "Deployment":
                assert container["args"][0] == "run"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
                labels = doc["spec"]["template"]["metadata"]["labels"]
                assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_helm_values_keep_the_hubs_nats_settings() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] and config["cluster"]["replicas"] == 3
    assert config["cluster"]["tls"]["merge"]["verify"] is True
    assert config["nats"]["tls"]["merge"]["verify_and_map"] is True
    assert config["leafnodes"]["tls"]["merge"]["verify_and_map"] is True
    assert config["jetstream"]["merge"]["sync_interval"] == "always"
    assert config["merge"]["$include"].endswith("accounts.conf")
    assert re.fullmatch(r"\d+\.\d+\.\d+-alpine", values["container"]["image"]["tag"])


# --- the entrypoint, outside a container -------------------------------------------------


def _entrypoint_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(settings)
    return env


def _ready(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _provision_secrets(tmp_path: Path) -> Path:
    """The secrets as deploy/README.md makes them: `nrm keys init --out deploy/secrets`."""
    secrets = tmp_path / "secrets"
    made = subprocess.run(
        ["sh", str(ENTRYPOINT), "keys", "init", "--out", str(secrets)],
        env=_entrypoint_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return secrets


def _key_settings(service: str, secrets: Path) -> dict[str, str]:
    """The key files compose.yaml gives `service`, at the same names under `secrets`."""
    environment: dict[str, str] = _compose()["services"][service].get("environment", {})
    return {
        name: value.replace("/run/secrets/", f"{secrets}/")
        for name, value in environment.items()
        if name.endswith("_FILE") and value.startswith("/run/secrets/")
    }


async def test_the_entrypoint_runs_each_service_until_ready(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """Keys made and mounted as deploy/README.md and compose.yaml say: each service finds
    every key it needs where compose puts it (the data dir holds none to fall back on)."""
    base = {"NRM_NATS_URL": nats_server.url, "NRM_DATA_DIR": str(tmp_path / "empty")}
    secrets = _provision_secrets(tmp_path)
    boot = subprocess.run(
        ["sh", str(ENTRYPOINT), "nrm", "bootstrap"],
        env=_entrypoint_env(**base),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert boot.returncode == 0, boot.stderr
    procs: dict[str, tuple[subprocess.Popen[str], int]] = {}
    try:
        for service in SERVICES:
            port = free_port()
            keys = _key_settings(service, secrets)
            env = _entrypoint_env(**base, **keys, NRM_HEALTH_PORT=str(port))
            proc = subprocess.Popen(
                ["sh", str(ENTRYPOINT), "run", service],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs[service] = (proc, port)
        deadline = time.monotonic() + 60
        waiting = set(procs)
        while waiting and time.monotonic() < deadline:
            for service in list(waiting):
                proc, port = procs[service]
                assert proc.poll() is None, (service, proc.communicate()[1][-2000:])
                if _ready(port):
                    waiting.discard(service)
            await asyncio.sleep(0.1)
        assert not waiting, f"not ready: {waiting}"
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # exec'd: the signal reaches nrm itself
        codes = {s: p.wait(timeout=30) for s, (p, _) in procs.items()}
    assert codes == {s: 0 for s in SERVICES}


@pytest.mark.parametrize(
    ("service", "secret", "setting"),
    [
        ("identifier", "kek", "NRM_KEK_FILE"),
        ("identifier", "intake.pem", "NRM_INTAKE_KEY_FILE"),
        ("identifier", "blind-index", "NRM_BLIND_INDEX_KEY_FILE"),
        ("custody", "kek", "NRM_KEK_FILE"),
        ("custody", "attestation-signing", "NRM_ATTESTATION_SIGNING_KEY_FILE"),
        ("audit", "audit-signing", "NRM_AUDIT_SIGNING_KEY_FILE"),
    ],
)
def test_a_missing_secret_stops_its_service_with_one_line_naming_it(
    tmp_path: Path, service: str, secret: str, setting: str
) -> None:
    secrets = _provision_secrets(tmp_path)
    (secrets / secret).unlink()
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "run", service],
        env=_entrypoint_env(
            NRM_NATS_URL="nats://127.0.0.1:1",  # never reached: the key is checked first
            NRM_DATA_DIR=str(tmp_path / "empty"),
            **_key_settings(service, secrets),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nrm: {setting}:"), done.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("NRM_HEALTH_PORT", "eighty"),
        ("NRM_HEALTH_HOST", "localhost"),
        ("NRM_NATS_URL", "http://nats:1"),  # the scheme is what is wrong
        ("NRM_NATS_TLS_CERT", "/nonexistent/identifier.pem"),
        ("NRM_NATS_TLS_CA", "/nonexistent/ca.pem"),
        ("NRM_MAX_DELIVER", "0"),
        ("NRM_NATS_URL", None),  # missing, and no local hub to fall back on
    ],
)
def test_a_bad_or_missing_setting_stops_the_service_naming_it(
    tmp_path: Path, setting: str, value: str | None
) -> None:
    env = {"NRM_NATS_URL": "nats://127.0.0.1:1", "NRM_DATA_DIR": str(tmp_path)}
    if value is None:
        del env[setting]
    else:
        env[setting] = value
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "run", "identifier"],
        env=_entrypoint_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert setting in result.stderr, result.stderr


def test_the_entrypoint_without_a_command_says_what_to_give() -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)], env=_entrypoint_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 64
    assert "run identifier" in result.stderr

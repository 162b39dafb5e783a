"""The container deployment uses every core the way `nrm up --workers` does: the busy
services run as several instances (compose replicas, Kubernetes autoscalers on CPU); the
audit writer (one chain) and the referral and shelter services (feed and deadline order) do not
scale out (services/workers.py SINGLE_INSTANCE)."""

from __future__ import annotations

from typing import Any

import yaml

from services.runtime.service_table import SERVICES
from services.workers import SINGLE_INSTANCE
from tests.integration.secured_hub import DEPLOY

SCALED = [s for s in SERVICES if s not in SINGLE_INSTANCE]


def test_compose_runs_the_replicated_services_as_several_containers() -> None:
    services: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name in SCALED:
        assert services[name]["deploy"]["replicas"] >= 2, name
    for name in SINGLE_INSTANCE:
        assert "replicas" not in services[name].get("deploy", {}), name


def test_kubernetes_scales_the_replicated_services_on_cpu() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "hub.yaml").read_text()) if d]
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    scalers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(scalers) == {f"nrm-{s}-autoscaler" for s in SCALED}
    for name, scaler in scalers.items():
        assert scaler["metadata"]["namespace"] == "nrm"
        target = scaler["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        assert target["name"] == name.removesuffix("-autoscaler") and target["name"] in deployments
        assert 2 <= scaler["spec"]["minReplicas"] < scaler["spec"]["maxReplicas"]
        (metric,) = scaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"

"""`nrm bench` at tiny sizes: it completes, checks its own work and prints every figure.
Speeds are printed, never asserted (they belong to the benchmark, not the tests)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nrm_tools.bench import report
from nrm_tools.bench.end_to_end import BenchFailure, run_hub, workload_for
from tests.integration.hub_reads import CANARIES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]


def test_quick_bench_completes_checks_itself_and_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["ok"] is True
    assert set(figures["runs"]) == {"default", "always"}
    printed = done.stdout
    assert "all checks passed" in printed
    for name, one in figures["runs"].items():
        for key in report.RAW_KEYS:
            assert f"raw.{key}" in printed and one["raw"][key] > 0
        for key in report.HUB_KEYS:
            assert f"hub_saturation.{key}" in printed and one["hub_saturation"][key] > 0
            for index in (0, 1):  # at the offered rate; under a light load
                assert f"hub_paced[{index}].{key}" in printed
                assert one["hub_paced"][index][key] > 0
        for key in report.REPLAY_KEYS:
            assert f"replay.{key}" in printed and one["replay"][key] > 0
        for key in report.RATIO_KEYS:
            assert f"ratios.{key}" in printed and one["ratios"][key] > 0
        # A durable that cannot keep up is reported (e.g. xb-outbox at one event a second).
        assert "hub_saturation.max_lag_at_last_leaf" in printed
        assert "xb-outbox" in one["hub_saturation"]["lag_at_end"]
        assert one["audit_verify"]["leaves"] == one["replay"]["events"]  # one leaf per event
        assert set(figures["targets"][name]) == {
            "hub_events_vs_raw_relay",
            "p99_ms_to_admitted_at_offered_rate",
            "p50_ms_to_admitted_unloaded",
            "audit_verify_leaves_per_s",
            "projection_replay_vs_raw_ordered",
            "statistics_replay_vs_raw_ordered",
        }
    assert "audit.checkpoint_sign_us" in printed and "audit.synthetic" in printed
    if importlib.util.find_spec("eventsourcing") is None:  # the optional `bench` extra
        assert "peer: eventsourcing not installed" in printed and "peer" not in figures
    else:
        for name in figures["runs"]:
            assert figures["peer"][name]["events"] == 165  # 30 cases, 5.5 events each
            assert figures["peer"][name]["events_per_s"] > 0
        assert set(figures["targets"]["peer"]) == {
            "hub_events_vs_eventsourcing",
            "hub_events_vs_eventsourcing_sync_always",
        }
        assert all(f"peer.{key}" in printed for key in report.PEER_KEYS)
    assert [g["n"] for g in figures["growth"]] == [10, 30]
    assert set(figures["targets"]["growth"]) == {
        "hub_us_per_event_30_vs_10_cases",
        "verify_cpu_500_vs_200_leaves",
        "verify_rss_500_vs_200_leaves",
    }
    assert "[growth] hub_us_per_event_30_vs_10_cases" in printed
    for canary in CANARIES:  # the bench's own personal data never shows either
        assert canary not in printed and canary not in done.stderr


async def test_a_run_that_does_not_match_its_expectations_is_a_failure(tmp_path: Path) -> None:
    workload = workload_for(6)
    # One more admission than the beds allow: the run must refuse to report a speed.
    doctored = dataclasses.replace(workload, admitted=workload.admitted + 1)
    with pytest.raises(BenchFailure, match="events by type"):
        await run_hub(tmp_path, doctored, sync_always=False)


def test_a_failed_run_prints_no_speed() -> None:
    printed = report.table({"ok": False, "failure": "2 events stored twice"})
    assert "BENCHMARK FAILED" in printed and "2 events stored twice" in printed
    assert "per_s" not in printed

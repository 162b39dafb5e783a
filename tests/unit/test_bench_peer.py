"""The bench's peer (eventsourcing + SQLite + AES): it runs, counts and checks itself.

The test extra carries eventsourcing, so these run wherever the tests run (a missing library
fails them); the bench itself treats the peer as optional and says when it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nrm_tools.bench import report
from nrm_tools.bench.end_to_end import BenchFailure
from nrm_tools.bench.run import _peer_targets


def test_the_peer_stores_every_event_encrypted_and_reports_its_speed(tmp_path: Path) -> None:
    from nrm_tools.bench import peer_eventsourcing

    for synchronous in ("NORMAL", "FULL"):
        run = peer_eventsourcing.measure(tmp_path / synchronous, 12, synchronous)
        figures = run.figures()
        assert figures["events"] == 66  # 5 and 6 events alternately: 5.5 per case
        assert figures["events_per_s"] > 0
        assert figures["library"].startswith("eventsourcing 9.")
        assert figures["storage"] == "SQLite file" and figures["cipher"] == "AES-256-GCM"
        assert figures["sqlite_synchronous"] == synchronous
        assert list((tmp_path / synchronous).glob("*.sqlite"))  # a file, not memory


def test_the_peer_applies_the_synchronous_setting_it_reports(tmp_path: Path) -> None:
    from nrm_tools.bench import peer_eventsourcing

    for synchronous, code in (("NORMAL", 1), ("FULL", 2)):
        app = peer_eventsourcing.application(tmp_path / f"{synchronous}.sqlite", synchronous)
        with app.factory.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA synchronous;")
            assert cursor.fetchone()[0] == code
        app.close()


def test_the_peer_refuses_to_report_a_store_without_encryption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nrm_tools.bench import peer_eventsourcing

    def without_cipher(database: Path, synchronous: str) -> peer_eventsourcing.PeerCases:
        return peer_eventsourcing.PeerCases(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(database),
                "CIPHER_TOPIC": "",
                "CIPHER_KEY": "",
            }
        )

    monkeypatch.setattr(peer_eventsourcing, "application", without_cipher)
    with pytest.raises(BenchFailure, match="plaintext"):
        peer_eventsourcing.measure(tmp_path, 4)


def _figures(peer: dict[str, Any] | None) -> dict[str, Any]:
    hub = dict.fromkeys(report.HUB_KEYS, 1.0) | {"lag_at_end": {"x": 0}, "events_per_s": 150.0}
    one = {
        "raw": dict.fromkeys(report.RAW_KEYS, 1.0),
        "hub_saturation": hub,
        "hub_paced": [{"offered_cases_per_s": 1.0, **hub}],
        "audit_verify": {"leaves": 1, "leaves_per_s": 1, "peak_kib": 1},
        "replay": dict.fromkeys(report.REPLAY_KEYS, 1.0),
        "ratios": dict.fromkeys(report.RATIO_KEYS, 1.0),
    }
    figures: dict[str, Any] = {
        "ok": True,
        "chosen": {
            "cases": 1,
            "paced_cases": 1,
            "offered_rate_cases_per_s": 1.0,
            "growth_n": [],
            "sync_interval": ["default"],
            "services": "in the bench process",
        },
        "machine": {"cpus": 2, "python": "3.11"},
        "runs": {"default": one},
        "audit": {"checkpoint_sign_us": 1.0, "synthetic": []},
        "targets": {},
        "total_seconds": 1.0,
    }
    if peer is not None:
        figures["peer"] = {"default": peer}
        figures["targets"]["peer"] = _peer_targets(figures)
    return figures


def test_the_table_prints_the_peer_and_the_hub_against_it() -> None:
    peer = {
        "library": "eventsourcing 9.5.6",
        "events": 11_000,
        "events_per_s": 600.0,
        "storage": "SQLite file",
        "cipher": "AES-256-GCM",
        "sqlite_synchronous": "NORMAL",
    }
    figures = _figures(peer)
    target = figures["targets"]["peer"]["hub_events_vs_eventsourcing"]
    assert target == {"value": 0.25, "target": 1.0, "met": False, "at_most": False}  # 150 / 600
    printed = report.table(figures)
    assert "-- peer: eventsourcing 9.5.6, SQLite file, AES-256-GCM" in printed
    for key in report.PEER_KEYS:
        assert f"peer.{key}" in printed
    assert "[peer] hub_events_vs_eventsourcing: 0.25 (target 1) MISSED" in printed


def test_without_the_library_the_table_says_so_and_has_no_peer_target() -> None:
    figures = _figures(None)
    printed = report.table(figures)
    assert "peer: eventsourcing not installed" in printed
    assert "hub_events_vs_eventsourcing" not in printed and "peer." not in printed

"""The bench's target lines: each says met or missed, and by how much, in the right
direction (a latency or a growth must stay under its target, the rest reach it)."""

from __future__ import annotations

from typing import Any

from nrm_tools.bench import report
from nrm_tools.bench.run import TARGET_FLAT_GROWTH, _growth_targets, target


def test_a_target_says_by_how_much_it_is_met_or_missed() -> None:
    assert report._by_how_much(0.05, 0.5, False, False) == "(10.00x short)"
    assert report._by_how_much(50.0, 25.0, False, True) == "(2.00x over)"
    assert report._by_how_much(5.0, 10.0, True, True) == "(with 2.00x to spare)"
    assert report._by_how_much(600_000, 300_000, True, False) == "(with 2.00x to spare)"


def test_a_target_is_met_on_its_own_side() -> None:
    assert target(0.5, 0.4)["met"] and not target(0.3, 0.4)["met"]
    assert target(20.0, 25.0, at_most=True)["met"]
    assert not target(30.0, 25.0, at_most=True)["met"]


def _synthetic(leaves: int, cpu: float, rss: int) -> dict[str, Any]:
    return {"leaves": leaves, "cpu_us_per_leaf_jobs_1": cpu, "peak_rss_kib_jobs_1": rss}


def test_growth_compares_the_largest_size_with_the_smallest() -> None:
    figures = {
        "growth": [
            {"n": 10_000, "us_per_event": 3_000.0},
            {"n": 1_000, "us_per_event": 2_000.0},  # order of the series does not matter
        ],
        "audit": {
            "synthetic": [
                _synthetic(100_000, 5.0, 60_000),
                _synthetic(10_000, 4.9, 59_000),
            ]
        },
    }
    targets = _growth_targets(figures)
    hub = targets["hub_us_per_event_10000_vs_1000_cases"]
    assert hub == {"value": 1.5, "target": TARGET_FLAT_GROWTH, "met": False, "at_most": True}
    assert targets["verify_cpu_100000_vs_10000_leaves"]["met"]
    assert targets["verify_rss_100000_vs_10000_leaves"]["value"] == round(60_000 / 59_000, 3)


def test_one_size_alone_has_no_growth_to_judge() -> None:
    figures = {
        "growth": [{"n": 1_000, "us_per_event": 2_000.0}],
        "audit": {"synthetic": [_synthetic(10_000, 4.9, 59_000)]},
    }
    assert _growth_targets(figures) == {}

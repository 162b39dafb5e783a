"""The benchmark's printed table and JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nrm_tools.bench import audit_verify

# Every figure the table prints, per sync setting (the smoke test checks each is present).
RAW_KEYS = (
    "awaited_publish_msg_per_s",
    "pipelined_publish_msg_per_s",
    "ordered_replay_msg_per_s",
    "relay_events_per_s",
    "relay_fanout_events_per_s",
    "relay_p50_ms",
    "relay_p99_ms",
)
HUB_KEYS = (
    "cases_per_s",
    "events_per_s",
    "events_per_s_until_audited",
    "us_per_event",
    "deliveries_per_event",
    "writes_per_event",
    "p50_ms",
    "p95_ms",
    "p99_ms",
)
REPLAY_KEYS = (
    "projections_events_per_s",
    "statistics_events_per_s",
    "raw_ordered_same_stream_msg_per_s",
)
RATIO_KEYS = (
    "hub_events_vs_raw_relay",
    "relay_fanout_vs_raw_relay",
    "hub_events_vs_relay_fanout",
    "projection_replay_vs_raw_ordered",
    "statistics_replay_vs_raw_ordered",
    "hub_p99_vs_relay_p99",
)

# The optional eventsourcing peer's rows, printed only when the `bench` extra is installed.
PEER_KEYS = ("sqlite_synchronous", "events", "events_per_s")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _worst(lag: dict[str, int]) -> str:
    """The most behind of the durables when the run ended, e.g. `0` or `258 xb-outbox`."""
    durable = max(lag, key=lambda d: lag[d])
    return f"{lag[durable]:,} {durable}" if lag[durable] else "0"


def table(figures: dict[str, Any]) -> str:
    if not figures.get("ok"):
        return f"BENCHMARK FAILED (no speed reported): {figures.get('failure')}\n"
    chosen = figures["chosen"]
    lines = [
        f"nrm bench: {chosen['cases']} cases at saturation, {chosen['paced_cases']} offered at "
        f"{chosen['offered_rate_cases_per_s']:g} cases/s, growth N={chosen['growth_n']}, "
        f"sync_interval={chosen['sync_interval']}, services {chosen['services']} "
        f"({figures['machine']['cpus']} CPUs, Python {figures['machine']['python']})",
        "",
    ]
    runs = figures["runs"]
    names = list(runs)
    row = "{:<52}" + "{:>16}" * len(names)
    lines.append(row.format("figure", *[f"sync {n}" for n in names]))

    def add(label: str, values: list[Any]) -> None:
        lines.append(row.format(label, *[_fmt(v) for v in values]))

    lines.append("-- raw nats-py ceilings (same server, same run)")
    for key in RAW_KEYS:
        add(f"raw.{key}", [runs[n]["raw"][key] for n in names])
    lines.append("-- hub end to end at saturation (until every consumer has taken every event)")
    for key in HUB_KEYS:
        add(f"hub_saturation.{key}", [runs[n]["hub_saturation"][key] for n in names])
    add(
        "hub_saturation.max_lag_at_last_leaf",
        [_worst(runs[n]["hub_saturation"]["lag_at_end"]) for n in names],
    )
    for index, label in enumerate(("the offered rate", "a light load (unloaded latency)")):
        if any(len(runs[n]["hub_paced"]) <= index for n in names):
            continue
        lines.append(f"-- hub at {label} (command -> shelter.admitted)")
        for key in ("offered_cases_per_s", *HUB_KEYS):
            add(f"hub_paced[{index}].{key}", [runs[n]["hub_paced"][index][key] for n in names])
    lines.append("-- audit and replay")
    for key in ("leaves", "leaves_per_s", "peak_kib"):
        add(f"audit_verify.{key}", [runs[n]["audit_verify"][key] for n in names])
    for key in REPLAY_KEYS:
        add(f"replay.{key}", [runs[n]["replay"][key] for n in names])
    lines.append("-- ratios (hub / raw ceiling, same run)")
    for key in RATIO_KEYS:
        add(f"ratios.{key}", [runs[n]["ratios"][key] for n in names])
    peer = figures.get("peer")
    if peer is None:  # the optional `bench` extra
        lines.append("-- peer: eventsourcing not installed (`make bench` installs it)")
    else:
        lines.append(_peer_header(peer[names[0]]))
        for key in PEER_KEYS:
            add(f"peer.{key}", [peer[n][key] for n in names])
    audit = figures["audit"]
    lines += ["", f"audit.checkpoint_sign_us: {_fmt(audit['checkpoint_sign_us'])}"]
    for item in audit["synthetic"]:
        lines += [f"audit.synthetic {line}" for line in audit_verify.describe(item)]
    if "growth" in figures:
        lines += ["", "growth (sync default, saturation): n, events, events/s, us/event, p99 ms"]
        for g in figures["growth"]:
            lines.append(
                f"growth n={g['n']:,}: {g['events']:,} events, {_fmt(g['events_per_s'])} ev/s, "
                f"{_fmt(g['us_per_event'])} us/event, p99 {_fmt(g['p99_ms'])} ms"
            )
    lines += ["", "targets:"]
    for name, targets in figures["targets"].items():
        for key, t in targets.items():
            mark = "met" if t["met"] else "MISSED"
            bound = "at most " if t["at_most"] else ""
            lines.append(
                f"  [{name}] {key}: {_fmt(t['value'])} (target {bound}{_fmt(t['target'])})"
                f" {mark} {_by_how_much(t['value'], t['target'], t['met'], t['at_most'])}"
            )
    lines.append(f"\nall checks passed; total {figures['total_seconds']} s")
    return "\n".join(lines) + "\n"


def _peer_header(peer: dict[str, Any]) -> str:
    return (
        f"-- peer: {peer['library']}, {peer['storage']}, {peer['cipher']} "
        "(same run; one process, no network, no consumers)"
    )


def write(figures: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def _by_how_much(value: float, target: float, met: bool, lower_is_better: bool) -> str:
    """How far from the target, as a factor: a latency or a growth must stay under its
    target, every other figure reach it."""
    if value <= 0 or target <= 0:
        return ""
    factor = value / target if lower_is_better else target / value
    if met:
        return f"(with {1 / factor:.2f}x to spare)"
    return f"({factor:.2f}x over)" if lower_is_better else f"({factor:.2f}x short)"

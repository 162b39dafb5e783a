"""`nrm bench`: arguments, the run, the table and the JSON file."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from nrm_tools.bench import report
from nrm_tools.bench.run import Options, run


def add_parser(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="hub speed beside raw NATS ceilings, in one run (docs/PERFORMANCE.md)",
    )
    bench.add_argument("--out", type=Path, default=Path("var/bench.json"), help="JSON figures")
    bench.add_argument("--cases", type=int, help="cases at saturation per sync setting")
    bench.add_argument("--paced-cases", type=int, help="cases offered at --rate")
    bench.add_argument("--rate", type=float, help="offered load for the latency figure (cases/s)")
    bench.add_argument(
        "--large",
        action="store_true",
        help="growth to 10k cases, audit bundles to 1M leaves (long; see docs/PERFORMANCE.md)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the bench itself, not speed"
    )
    bench.add_argument(
        "--sync", choices=("default", "always", "both"), default="both", help="sync_interval"
    )
    bench.add_argument("--profile", type=Path, help="pyinstrument text profile of the hub run")
    bench.add_argument(
        "--processes",
        action="store_true",
        help="run each service as its own process, as deployed (default: in the bench process)",
    )
    bench.add_argument(
        "--workers",
        type=int,
        help="run the services in N worker processes, as `nrm up --workers N` does "
        "(default: one per core, as `nrm up`; 1: in the bench process)",
    )


QUICK = Options(
    cases=30,
    paced_cases=20,
    rate=50.0,
    unloaded_cases=10,
    unloaded_rate=20.0,
    growth=(10, 30),
    synthetic_leaves=(200, 500),  # two sizes: the verifier's growth target has a line
    raw_publishes=200,
    relay_events=300,
    relay_rate=200.0,
    relay_seconds=0.5,
    workers=1,  # the smoke test checks the bench itself; worker processes are tested apart
)


def options_from(args: argparse.Namespace) -> Options:
    options = QUICK if args.quick else Options.large() if args.large else Options()
    overrides: dict[str, Any] = {
        "cases": args.cases,
        "paced_cases": args.paced_cases,
        "rate": args.rate,
        "profile": args.profile,
        "processes": args.processes or None,
        "workers": args.workers,
    }
    options = replace(options, **{k: v for k, v in overrides.items() if v is not None})
    if options.cases not in options.growth:
        options = replace(options, growth=tuple(sorted({*options.growth, options.cases})))
    sync = ("default", "always") if args.sync == "both" else (args.sync,)
    return replace(options, sync=sync)


def say(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


async def main(args: argparse.Namespace) -> int:
    options = options_from(args)
    say(
        f"chosen: {options.cases} cases at saturation and {options.paced_cases} at "
        f"{options.rate:g} cases/s per sync setting {list(options.sync)}; growth N="
        f"{list(options.growth)}; synthetic audit bundles {list(options.synthetic_leaves)} leaves"
    )
    results = await run(options, say)
    print(report.table(results.figures), end="")
    report.write(results.figures, args.out)
    print(f"figures written to {args.out}")
    return 0 if results.failure is None else 1

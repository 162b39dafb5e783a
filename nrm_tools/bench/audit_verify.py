"""Offline audit verification speed and memory (issue 19: >= 300k leaves/s, flat memory).

Each measurement verifies a synthetic bundle in a fresh process (`verify_bundle`, as
`nrm audit verify --jobs N` does), so its peak RSS is the verifier's alone: the peak RSS and
CPU time of the verifier and of its workers (its children) come from getrusage. CPU time per
leaf is the figure that a busy machine disturbs least. Beside them, the ceiling: SHA-256 and
the compact range alone over the same file, in one process.

Standalone, without a hub: `python -m nrm_tools.bench.audit_verify [--leaves 10000 100000]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from contracts.operations import AuditActor, AuditEntry, AuditSource
from nrm_tools.bench.audit_replay import VerificationFailed, synthetic_bundle
from services.audit.bundle import LEAVES_FILE, default_jobs
from services.audit.leaf_chunks import chunk_bounds
from services.audit.log import LogState
from services.audit.merkle import CompactRange, subtree_levels

TARGET_LEAVES_S = 300_000

# Runs in the child: verify, then print the time, and the CPU time and peak RSS of the
# verifier and of its workers (forked, joined: counted as its children). The verifier's peak
# is VmHWM, which exec resets (ru_maxrss would still hold the parent's size before exec).
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from services.audit.bundle import verify_bundle
started, cpu = time.perf_counter(), time.process_time()
report = verify_bundle(Path(sys.argv[1]), jobs=int(sys.argv[2]))
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
workers = resource.getrusage(resource.RUSAGE_CHILDREN)
status = Path("/proc/self/status").read_text().split("VmHWM:")[1].split()
print(json.dumps({"leaves": report.leaves, "ok": report.failure is None, "seconds": seconds,
                  "cpu": cpu, "rss_kib": int(status[0]),
                  "workers_cpu": workers.ru_utime + workers.ru_stime,
                  "workers_rss_kib": workers.ru_maxrss}))
"""


@dataclass(frozen=True)
class VerifyRun:
    leaves: int
    jobs: int
    seconds: float
    cpu_seconds: float  # the verifier and its workers, from their start to their end
    peak_rss_kib: int  # the verifying process
    workers_peak_rss_kib: int  # the largest worker process (0 with no worker)

    @property
    def leaves_per_second(self) -> float:
        return self.leaves / self.seconds

    @property
    def cpu_us_per_leaf(self) -> float:
        return self.cpu_seconds / self.leaves * 1e6


def template_leaf() -> bytes:
    """A leaf shaped like an `access.granted` one (~750 bytes), for bundles without a hub."""
    at = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    entry = AuditEntry(
        index=0,
        time=at,
        action="access.granted",
        actor=AuditActor(
            agency="kg-ngo-osh-crisis-centre", role="ngo", service="urn:nrm-hub:kg:custody"
        ),
        ids={"case_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4())},
        purpose="assistance",
        detail={"basis": "consent", "fields": ["full_name", "date_of_birth", "phone"]},
        source=AuditSource(
            stream="NRM_EVENTS",
            sequence=1,
            id=str(uuid.uuid4()),
            sha256=hashlib.sha256(b"event").hexdigest(),
        ),
    )
    return LogState().leaf_for(entry, "urn:nrm-hub:kg:audit", at)


def measure(bundle: Path, jobs: int) -> VerifyRun:
    """Verify `bundle` with `jobs` processes in a fresh interpreter (so the peak RSS is the
    verifier's alone, not this process's), as `nrm audit verify --jobs` does."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(bundle), str(jobs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise VerificationFailed(f"the verifier exited {done.returncode}: {done.stderr[-300:]}")
    result = json.loads(done.stdout)
    if not result["ok"]:
        raise VerificationFailed(f"the bundle did not verify ({result['leaves']} leaves)")
    return VerifyRun(
        leaves=result["leaves"],
        jobs=jobs,
        seconds=result["seconds"],
        cpu_seconds=result["cpu"] + result["workers_cpu"],
        peak_rss_kib=result["rss_kib"],
        workers_peak_rss_kib=result["workers_rss_kib"],
    )


def ceiling(bundle: Path) -> float:
    """Leaves/s of SHA-256 and the tree alone over the bundle, in one process (no parsing, no
    check): the leaves read and hashed a chunk at a time and appended by subtree roots, as
    the verifier does (`leaf_chunks`, `merkle.subtree_levels`)."""
    path, tree, sha256 = bundle / LEAVES_FILE, CompactRange(), hashlib.sha256
    started = time.perf_counter()
    with path.open("rb") as handle:
        for start, end in chunk_bounds(path):
            handle.seek(start)
            lines = handle.read(end - start).split(b"\n")
            lines.pop()
            hashes = b"".join([sha256(b"\x00" + raw).digest() for raw in lines])
            tree.extend_levels(subtree_levels(hashes, tree.size), tree.size, tree.size + len(lines))
    tree.root()
    return tree.size / (time.perf_counter() - started)


def figures(bundles: list[Path], jobs: int, repeat: int = 3) -> list[dict[str, object]]:
    """Jobs 1 and jobs N over each bundle (the fastest of `repeat` runs each: other work on
    the machine only ever slows a run down), the ceiling, met/missed against the target.
    The rounds go over every bundle in turn, so that the sizes are measured in the same
    minutes: on a machine whose speed drifts by the minute, sizes measured one after the
    other would show the drift as growth (the bench's flat-growth targets compare them)."""
    one: dict[Path, VerifyRun] = {}
    many: dict[Path, VerifyRun] = {}
    best_ceiling: dict[Path, float] = {}

    def faster(kept: VerifyRun | None, run: VerifyRun) -> VerifyRun:
        return run if kept is None or run.leaves_per_second > kept.leaves_per_second else kept

    for _ in range(repeat):
        for bundle in bundles:
            one[bundle] = faster(one.get(bundle), measure(bundle, 1))
            if jobs > 1:
                many[bundle] = faster(many.get(bundle), measure(bundle, jobs))
            best_ceiling[bundle] = max(best_ceiling.get(bundle, 0.0), ceiling(bundle))
    return [_figures(one[b], many.get(b, one[b]), jobs, best_ceiling[b], repeat) for b in bundles]


def _figures(
    one: VerifyRun, many: VerifyRun, jobs: int, ceiling_leaves_s: float, repeat: int
) -> dict[str, object]:
    return {
        "leaves": one.leaves,
        "jobs": jobs,
        "leaves_per_s_jobs_1": round(one.leaves_per_second),
        "leaves_per_s_jobs_n": round(many.leaves_per_second),
        "peak_rss_kib_jobs_1": one.peak_rss_kib,
        "peak_rss_kib_jobs_n": many.peak_rss_kib,
        "worker_peak_rss_kib": many.workers_peak_rss_kib,
        "cpu_us_per_leaf_jobs_1": round(one.cpu_us_per_leaf, 2),
        "cpu_us_per_leaf_jobs_n": round(many.cpu_us_per_leaf, 2),
        "sha256_and_compact_range_leaves_per_s": round(ceiling_leaves_s),
        "runs_each": repeat,
        "target_leaves_per_s": TARGET_LEAVES_S,
        "met_jobs_1": one.leaves_per_second >= TARGET_LEAVES_S,
        "met_jobs_n": many.leaves_per_second >= TARGET_LEAVES_S,
    }


def describe(item: dict[str, object]) -> list[str]:
    """The figures of one bundle size as printed lines."""
    mark = {True: "met", False: "MISSED"}
    leaves = f"{item['leaves']:,}"
    return [
        f"verify leaves={leaves} jobs=1: {item['leaves_per_s_jobs_1']:,} leaves/s "
        f"(target {TARGET_LEAVES_S:,}: {mark[bool(item['met_jobs_1'])]}), "
        f"peak RSS {item['peak_rss_kib_jobs_1']:,} KiB, "
        f"CPU {item['cpu_us_per_leaf_jobs_1']} us/leaf",
        f"verify leaves={leaves} jobs={item['jobs']}: {item['leaves_per_s_jobs_n']:,} "
        f"leaves/s (target {TARGET_LEAVES_S:,}: {mark[bool(item['met_jobs_n'])]}), peak RSS "
        f"{item['peak_rss_kib_jobs_n']:,} KiB + "
        + (
            f"largest worker {item['worker_peak_rss_kib']:,} KiB"
            if item["worker_peak_rss_kib"]
            else "no worker (one chunk: nothing to share)"
        )
        + f", CPU {item['cpu_us_per_leaf_jobs_n']} us/leaf (all processes)",
        f"verify leaves={leaves} ceiling (SHA-256 + compact range only): "
        f"{item['sha256_and_compact_range_leaves_per_s']:,} leaves/s "
        f"(each figure the best of {item['runs_each']} runs)",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description="offline audit verification speed and memory")
    parser.add_argument("--leaves", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--jobs", type=int, default=default_jobs())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nrm-audit-bench-") as tmp:
        bundles = [Path(tmp) / f"bundle-{leaves}" for leaves in args.leaves]
        for leaves, bundle in zip(args.leaves, bundles, strict=True):
            synthetic_bundle(template_leaf(), leaves, bundle)
        for item in figures(bundles, args.jobs):
            print("\n".join(f"audit.{line}" for line in describe(item)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Offline audit verification speed and memory (issue 19: >= 300k leaves/s, flat memory).

Each measurement verifies a synthetic bundle in a fresh process (`verify_bundle`, as
`nrm audit verify --jobs N` does), so its peak RSS is the verifier's alone; the peak of the
verifier process and of its worker processes is read from /proc (VmHWM) while it runs. Beside
it, the ceiling: SHA-256 and the compact range alone over the same file, in one process.

Standalone, without a hub: `python -m nrm_tools.bench.audit_verify [--leaves 10000 100000]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from contracts.operations import AuditActor, AuditEntry, AuditSource
from nrm_tools.bench.audit_replay import VerificationFailed, synthetic_bundle
from services.audit.bundle import LEAVES_FILE, default_jobs
from services.audit.log import LogState
from services.audit.merkle import CompactRange

TARGET_LEAVES_S = 300_000

# Runs in the child: verify, then print leaves, seconds, CPU seconds of the verifier itself.
_CHILD = """
import json, sys, time
from pathlib import Path
from services.audit.bundle import verify_bundle
started, cpu = time.perf_counter(), time.process_time()
report = verify_bundle(Path(sys.argv[1]), jobs=int(sys.argv[2]))
print(json.dumps({"leaves": report.leaves, "ok": report.failure is None,
                  "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}))
"""


@dataclass(frozen=True)
class VerifyRun:
    leaves: int
    jobs: int
    seconds: float
    peak_rss_kib: int  # the verifying process
    workers_peak_rss_kib: int  # the largest worker process (0 with jobs 1)

    @property
    def leaves_per_second(self) -> float:
        return self.leaves / self.seconds


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
    """Verify `bundle` with `jobs` processes in a fresh interpreter; its time and peak RSS."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(bundle), str(jobs)],
        stdout=subprocess.PIPE,
        text=True,
    )
    peaks: dict[int, int] = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch_peaks, args=(child.pid, peaks, done), daemon=True)
    watcher.start()
    out, _ = child.communicate()
    done.set()
    watcher.join()
    if child.returncode != 0:
        raise VerificationFailed(f"the verifier exited {child.returncode}")
    result = json.loads(out)
    if not result["ok"]:
        raise VerificationFailed(f"the synthetic bundle did not verify ({result['leaves']} leaves)")
    own = peaks.pop(child.pid, 0)
    # The forkserver that starts the workers is a small process of its own: the largest
    # of the rest is the largest worker.
    return VerifyRun(result["leaves"], jobs, result["seconds"], own, max(peaks.values(), default=0))


def _watch_peaks(root: int, peaks: dict[int, int], done: threading.Event) -> None:
    """VmHWM (peak RSS) of `root` and its descendants, read every 20 ms until done."""
    while not done.is_set():
        for pid in _tree(root):
            peak = _vm_hwm_kib(pid)
            if peak:
                peaks[pid] = max(peaks.get(pid, 0), peak)
        done.wait(0.02)


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ceiling(bundle: Path) -> float:
    """Leaves/s of SHA-256 and the compact range alone over the bundle (no parsing)."""
    tree = CompactRange()
    started = time.perf_counter()
    with (bundle / LEAVES_FILE).open("rb") as handle:
        for line in handle:
            tree.append(hashlib.sha256(b"\x00" + line[:-1]).digest())
    return tree.size / (time.perf_counter() - started)


def figures(bundle: Path, jobs: int) -> dict[str, object]:
    """Jobs 1 and jobs N over one bundle, the ceiling, and met/missed against the target."""
    one = measure(bundle, 1)
    many = measure(bundle, jobs) if jobs > 1 else one
    return {
        "leaves": one.leaves,
        "jobs": jobs,
        "leaves_per_s_jobs_1": round(one.leaves_per_second),
        "leaves_per_s_jobs_n": round(many.leaves_per_second),
        "peak_rss_kib_jobs_1": one.peak_rss_kib,
        "peak_rss_kib_jobs_n": many.peak_rss_kib,
        "worker_peak_rss_kib": many.workers_peak_rss_kib,
        "sha256_and_compact_range_leaves_per_s": round(ceiling(bundle)),
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
        f"peak RSS {item['peak_rss_kib_jobs_1']:,} KiB",
        f"verify leaves={leaves} jobs={item['jobs']}: {item['leaves_per_s_jobs_n']:,} "
        f"leaves/s (target {TARGET_LEAVES_S:,}: {mark[bool(item['met_jobs_n'])]}), peak RSS "
        f"{item['peak_rss_kib_jobs_n']:,} KiB + "
        + (
            f"largest worker {item['worker_peak_rss_kib']:,} KiB"
            if item["worker_peak_rss_kib"]
            else "no worker (one chunk: nothing to share)"
        ),
        f"verify leaves={leaves} ceiling (SHA-256 + compact range only): "
        f"{item['sha256_and_compact_range_leaves_per_s']:,} leaves/s",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description="offline audit verification speed and memory")
    parser.add_argument("--leaves", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--jobs", type=int, default=default_jobs())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nrm-audit-bench-") as tmp:
        for leaves in args.leaves:
            bundle = Path(tmp) / f"bundle-{leaves}"
            synthetic_bundle(template_leaf(), leaves, bundle)
            print("\n".join(f"audit.{line}" for line in describe(figures(bundle, args.jobs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

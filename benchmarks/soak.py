"""Soak test: run `touchstone run --hours H` and watch what it holds, for growth a short test cannot see.

    python benchmarks/soak.py --hours 2 --workspace /tmp/soak-ws                  # the real soak
    python benchmarks/soak.py --hours 0.05 --every 10 --config tiny.yaml --workspace /tmp/soak-ws

Every `--every` seconds (default 60) it samples the loop's whole process tree (the loop, its wing pool
workers, sandboxed code runs): resident memory summed over the tree (RSS), open file descriptors,
threads, processes, and the workspace's size on disk; and prints one row per sample. At the end (the
loop finished, or H hours plus a grace period passed) it prints the peaks and a verdict on each
figure: growth is judged on the second half of the run only, against the first sample of that half,
so generation 0's start-up (pretraining, pool start) does not count as a leak; the workspace is
allowed its expected growth per finished generation (new records, a champion's weights), which the
verdict reports beside the measured one. Exit status 1 if any figure grew beyond its allowance.

RSS is summed over processes, so pages they share are counted more than once: read it as an upper
bound, and its trend as the signal. The sampler itself is not in the tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

# Allowances for the second half of a run, relative to its first sample: memory and threads may wobble
# by this fraction (caches warming, a pool being rebuilt), descriptors and processes by a fixed count.
RSS_SLACK = 0.25
THREADS_SLACK = 0.25
FDS_SLACK = 16
PROCS_SLACK = 4


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def sample(pid: int, workspace: Path) -> dict:
    rss = fds = threads = procs = 0
    for p in tree(pid):
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                fds += p.num_fds()
                threads += p.num_threads()
                procs += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a sandboxed run that ended between the listing and the look
    return {
        "t": time.monotonic(),
        "rss_mb": rss / 2**20,
        "fds": fds,
        "threads": threads,
        "procs": procs,
        "disk_mb": disk_usage(workspace) / 2**20,
    }


def disk_usage(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # a staging file renamed away between the walk and the stat
    return total


def finished_generations(workspace: Path) -> int:
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{workspace / 'ledger.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            (n,) = db.execute("SELECT COUNT(*) FROM generations WHERE gen > 0 AND decision IS NOT NULL").fetchone()
        finally:
            db.close()
        return n
    except sqlite3.Error:
        return 0


def verdict(rows: list[dict], gens: list[int], workspace: Path) -> tuple[list[str], bool]:
    """Lines judging each figure's growth over the second half of the run, and whether all are within
    their allowance."""
    if len(rows) < 4:
        return ["too few samples to judge growth (run longer, or sample more often with --every)"], True
    half = rows[len(rows) // 2 :]
    first, last = half[0], half[-1]
    lines, ok = [], True

    def judge(name, unit, allowed):
        nonlocal ok
        grew = last[name] - first[name]
        fine = grew <= allowed
        ok &= fine
        lines.append(
            f"{name:>8}: {first[name]:.1f} -> {last[name]:.1f} {unit} over the second half "
            f"(peak {max(r[name] for r in rows):.1f}); allowed +{allowed:.1f}: "
            f"{'flat' if fine else 'GROWING'}"
        )

    judge("rss_mb", "MB", RSS_SLACK * first["rss_mb"])
    judge("fds", "", FDS_SLACK)
    judge("threads", "", max(4, THREADS_SLACK * first["threads"]))
    judge("procs", "", PROCS_SLACK)
    done = gens[-1] - gens[len(rows) // 2]
    # Per finished generation the workspace gains its records and, at most, a promoted champion's weights
    # (plus its copy of the tokenizer): bound it by the largest model directory in the workspace.
    per_gen = max([disk_usage(d) for d in (workspace / "models").glob("gen-*")] or [0]) / 2**20 + 16
    judge("disk_mb", "MB", per_gen * max(1, done))
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, required=True, help="passed to touchstone run --hours")
    ap.add_argument("--workspace", required=True, help="a new or existing workspace (never the one you use)")
    ap.add_argument("--config", help="loop YAML for a new workspace (touchstone run --config)")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    ap.add_argument(
        "--grace",
        type=float,
        default=1800.0,
        help="seconds past --hours before the loop is stopped with SIGTERM (a generation in "
        "flight finishes first: --hours is checked between generations)",
    )
    ap.add_argument("--nice", type=int, default=0, help="niceness of the loop (19 on a shared machine)")
    args = ap.parse_args(argv)
    workspace = Path(args.workspace)
    cmd = [sys.executable, "-m", "touchstone", "run", "--workspace", str(workspace), "--hours", str(args.hours)]
    if args.config:
        cmd += ["--config", args.config]
    log = workspace.parent / f"{workspace.name}.soak.log"
    print(f"$ {' '.join(cmd)}   (output in {log})", flush=True)
    with open(log, "a") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=(lambda: os.nice(args.nice)) if args.nice else None
        )
    start, rows, gens = time.monotonic(), [], []
    deadline = start + args.hours * 3600 + args.grace
    print(f"{'min':>6} {'rss MB':>8} {'fds':>5} {'threads':>7} {'procs':>5} {'disk MB':>8} {'gens':>4}", flush=True)
    stopped = False
    while proc.poll() is None:
        rows.append(sample(proc.pid, workspace))
        gens.append(finished_generations(workspace))
        r = rows[-1]
        print(
            f"{(r['t'] - start) / 60:>6.1f} {r['rss_mb']:>8.0f} {r['fds']:>5} {r['threads']:>7} {r['procs']:>5} "
            f"{r['disk_mb']:>8.1f} {gens[-1]:>4}",
            flush=True,
        )
        if time.monotonic() > deadline and not stopped:
            print("past --hours and the grace period: SIGTERM", flush=True)
            proc.send_signal(signal.SIGTERM)
            stopped = True
        try:
            proc.wait(timeout=args.every)
        except subprocess.TimeoutExpired:
            pass
    code = proc.returncode
    print(
        f"\ntouchstone run exited with status {code} after {(time.monotonic() - start) / 60:.1f} minutes, "
        f"{gens[-1] if gens else 0} generation(s) finished; workspace {disk_usage(workspace) / 2**20:.1f} MB "
        f"(free disk {shutil.disk_usage(workspace).free / 2**30:.1f} GB)"
    )
    lines, ok = verdict(rows, gens, workspace)
    print("\n".join(lines))
    print(f"verdict: {'no unbounded growth seen' if ok else 'GROWTH beyond the allowance'}")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Peak memory of the main job, step by step: `touchstone run --generations N` with its process tree's
resident memory sampled every --every seconds and each sample given to the step the loop was in.

    python benchmarks/bench_memory.py --workspace /tmp/mem-ws                 # the defaults, 1 generation
    python benchmarks/bench_memory.py --workspace /tmp/mem-ws --generations 2 --every 0.2

Prints one row per step (generation, step, seconds, peak RSS of the tree and of the loop's own process),
then the run's peak against its peer measured in the same run: a process that imports what the loop
imports and loads generation 0's model, the floor below which no step that uses the model can go. RSS is
summed over processes (shared pages counted more than once): an upper bound.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from soak import tree

STEP_LINE = re.compile(r"\[\d\d:\d\d:\d\d\] generation (\d+): (\w+)")
TARGET_MB = 3 * 1024  # the main job's peak must fit a laptop with 8 GB: at most 3 GB

FLOOR = """
import resource, sys
import touchstone.loop.run
from touchstone.generate import load_model
model, tokenizer = load_model(sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True, help="a new workspace (never the one you use)")
    ap.add_argument("--generations", type=int, default=1)
    ap.add_argument("--config", help="loop YAML for the new workspace (default: the embedded defaults)")
    ap.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    args = ap.parse_args(argv)
    workspace = Path(args.workspace)
    cmd = [sys.executable, "-m", "touchstone", "run", "--workspace", str(workspace)]
    cmd += ["--generations", str(args.generations)] + (["--config", args.config] if args.config else [])
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    current = ["start"]
    peaks: dict[str, dict] = {}

    def follow() -> None:  # the loop's output: which step it is in
        for line in proc.stdout:
            m = STEP_LINE.search(line)
            if m:
                current[0] = f"{m.group(1)}/{m.group(2)}"
                peaks.setdefault(current[0], {"start": time.monotonic(), "tree": 0.0, "loop": 0.0})

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    while proc.poll() is None:
        total = own = 0
        for p in tree(proc.pid):
            try:
                rss = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            own += rss if p.pid == proc.pid else 0
        row = peaks.get(current[0])
        if row is not None:
            row["tree"] = max(row["tree"], total / 2**20)
            row["loop"] = max(row["loop"], own / 2**20)
        time.sleep(args.every)
    reader.join(timeout=5)
    if proc.returncode != 0:
        print(f"touchstone run exited with status {proc.returncode}")
        return 1
    steps = list(peaks)
    print(f"\n{'step':<18} {'seconds':>8} {'tree MB':>8} {'loop MB':>8}")
    for i, name in enumerate(steps):
        end = peaks[steps[i + 1]]["start"] if i + 1 < len(steps) else time.monotonic()
        r = peaks[name]
        if r["tree"]:
            print(f"{name:<18} {end - r['start']:>8.0f} {r['tree']:>8.0f} {r['loop']:>8.0f}")
        else:  # over between two samples
            print(f"{name:<18} {end - r['start']:>8.0f} {'-':>8} {'-':>8}")
    peak = max(r["tree"] for r in peaks.values())
    floor = float(
        subprocess.run(
            [sys.executable, "-c", FLOOR, str(workspace / "models" / "gen-0000")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    print(
        f"\npeak {peak:.0f} MB (target {TARGET_MB} MB: {'met' if peak <= TARGET_MB else 'NOT met'}); "
        f"peer: a process that loads the model, {floor:.0f} MB; ratio {peak / floor:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

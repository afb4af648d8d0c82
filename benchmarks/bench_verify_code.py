"""Code verifications per second: the sandbox's worker pool against a fresh plain subprocess per check.

    python benchmarks/bench_verify_code.py [--n 328] [--workers 2]

The workload is HumanEval's 164 reference solutions with their tests (repeated to --n checks), or the
code world's template items when HumanEval is not present. The peer runs each check the way
human-eval does: a fresh `python` process executing program + test + check(entry_point), with as many
checks at once as the pool has workers. Also printed: the start-up overhead bubblewrap adds to one
interpreter launch.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from touchstone.files import shared_data
from touchstone.sandbox import ISOLATIONS, Sandbox, interpreter, usable, worker_argv
from touchstone.worlds.code import CodeWorld
from touchstone.worlds.programs import humaneval_item

HUMANEVAL = shared_data() / "humaneval" / "HumanEval.jsonl.gz"


def workload(n: int, box: Sandbox) -> list[dict]:
    if HUMANEVAL.exists():
        with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as f:
            items = [humaneval_item(json.loads(line)) for line in f]
    else:
        items = CodeWorld(sandbox=box).sample_many(random.Random(0), 64)
    return [items[i % len(items)] for i in range(n)]


def plain_check(item: dict) -> bool:
    program = item["prompt"] + item["completion"] + "\n" + item["test"] + f"\ncheck({item['entry_point']})\n"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30).returncode == 0


def launch_ms(argv: list[str], repeats: int = 20) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        subprocess.run(argv, capture_output=True, check=True)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=328)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with Sandbox(workers=args.workers) as box:
        world = CodeWorld(timeout=10, sandbox=box)
        items = workload(args.n, box)
        world.verify_many(items[: args.workers * 2])  # start the workers
        start = time.perf_counter()
        verdicts = world.verify_many(items)
        sandboxed = len(items) / (time.perf_counter() - start)
        print(
            f"sandbox pool ({box.isolation}, {args.workers} workers): "
            f"{sandboxed:.1f} verifications/s, {sum(v.ok for v in verdicts)}/{len(items)} passed"
        )
    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as ex:
        ok = list(ex.map(plain_check, items))
    plain = len(items) / (time.perf_counter() - start)
    print(
        f"fresh plain subprocess per check ({args.workers} at once): {plain:.1f} verifications/s, "
        f"{sum(ok)}/{len(items)} passed"
    )
    print(f"ratio sandbox/plain: {sandboxed / plain:.2f}x")
    python = interpreter()
    bare = launch_ms([python, "-I", "-S", "-c", "pass"])
    print(f"interpreter launch: {bare:.1f} ms bare")
    for isolation in ISOLATIONS:
        if usable(isolation):
            # a worker that builds its root, takes the job limits once and exits: its start-up cost
            with tempfile.TemporaryDirectory(prefix="touchstone-bench-") as new_root:
                wrapped = launch_ms(worker_argv(isolation, python, new_root) + ["--probe"])
            print(f"worker start in {isolation}: {wrapped:.1f} ms (overhead {wrapped - bare:.1f} ms)")


if __name__ == "__main__":
    main()

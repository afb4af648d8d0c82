"""Wing analyses, cached by design and fanned out over a process pool, and the comparison of two
designs for one mission.

`analyze_many` and `WingWorld.verify_many` send chunks of designs to a pool of processes, spawned once
(safe beside torch threads) and reused, one BLAS thread per worker, a record's designs in the same
chunk; each chunk is one vectorized batch in its worker (`touchstone.worlds.wing.aero.side_by_side`).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from touchstone.worlds.base import Verdict
from touchstone.worlds.wing.aero import (
    AIRFOILS,
    DEFAULTS,
    prepare_airfoil,
    side_by_side,
)

MIN_LD_MARGIN = 0.03  # relative L/D difference below which two feasible designs are a tie
# Below this many designs a call stays in this process: one vectorized batch does ~3,000 designs a
# second, so the work is over before a pool (seconds to start, a few ms a task) would pay for itself.
POOL_MIN = 1024
CHUNK = 128  # designs per pool task, analysed in one vectorized batch


# Analyses by design, least recently used dropped past CACHE_SIZE: a loop that runs for days meets new
# designs every generation, and an unbounded cache grew with all of them. An analysis is about 1.5 KB
# with its key, so the cache stays under about 30 MB; a generation asks for a few thousand at most
# (records, gate set, held-out suite), which stay cached from `prefetch` to the `analyze` that reads them.
CACHE_SIZE = 20_000
cache: OrderedDict[str, dict] = OrderedDict()
pool: ProcessPoolExecutor | None = None


def _remember(key: str, result: dict) -> None:
    cache[key] = result
    cache.move_to_end(key)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)


def cache_key(design: dict) -> str:
    return repr(sorted({**DEFAULTS, **design}.items()))


def analyze(design: dict) -> dict:
    """The figures a person would quote for one design (CL, CD, L/D, alpha, loading, stall margin...)."""
    key = cache_key(design)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    result = side_by_side([design])[0]
    if isinstance(result, Exception):
        raise result
    _remember(key, result)
    return result


def _start_worker() -> None:
    # Each worker is one core's worth of work; threaded BLAS inside it would only fight its siblings.
    # Effective while numpy is not yet imported here (this module imports it only inside functions).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    for name in AIRFOILS:  # import AeroSandbox and fit the airfoils now, not in the first chunk
        prepare_airfoil(name)


def workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def prefetch(groups: list[list[dict]], processes: int | None = None) -> None:
    """Analyse every uncached design into the cache; a group (a record's designs) stays in one chunk.
    Designs whose analysis raises are left out; `analyze` raises for them when asked."""
    processes = processes or workers()
    seen: set[str] = set()
    todo: list[list[tuple[str, dict]]] = []
    for group in groups:
        fresh = [(k, d) for k, d in ((cache_key(d), d) for d in group) if k not in cache and k not in seen]
        seen.update(k for k, _ in fresh)
        if fresh:
            todo.append(fresh)
    if not todo:
        return
    n = sum(map(len, todo))
    pooled = n >= POOL_MIN and processes > 1
    # Big enough that a batch's fixed cost (~2 ms) is shared out; small enough that a worker slowed
    # by other load on the machine does not hold the last chunk alone.
    size = min(CHUNK, -(-n // (2 * processes))) if pooled else CHUNK
    chunks, chunk = [], []
    for group in todo:
        chunk += group
        if len(chunk) >= size:
            chunks.append(chunk)
            chunk = []
    chunks += [chunk] if chunk else []
    designs = [[d for _, d in chunk] for chunk in chunks]
    results = _pooled(designs, processes) if pooled else map(side_by_side, designs)
    for chunk, analysed in zip(chunks, results):
        for (key, _), result in zip(chunk, analysed):
            if not isinstance(result, Exception):
                _remember(key, result)


def _pooled(designs: list[list[dict]], processes: int) -> list[list]:
    """`side_by_side` of each chunk over the process pool. A worker that died (killed, out of memory)
    breaks its pool for good (BrokenProcessPool on every later call), so the pool is rebuilt and the
    chunks asked once more; a second break is raised."""
    global pool
    for attempt in (1, 2):
        if pool is None or pool._max_workers != processes:
            shutdown_pool(wait=False)
            pool = ProcessPoolExecutor(
                processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker
            )
        try:
            return list(pool.map(side_by_side, designs))
        except BrokenProcessPool:
            shutdown_pool(wait=False)
            if attempt == 2:
                raise


@atexit.register  # before the interpreter tears modules down
def shutdown_pool(wait: bool = True) -> None:
    global pool
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)
        pool = None


def analyze_many(designs: list[dict], processes: int | None = None) -> list[dict]:
    """`analyze` for many designs, over a process pool of `processes` (default: every core)."""
    prefetch([[d] for d in designs], processes)
    return [analyze(d) for d in designs]


def compare(a: dict, b: dict) -> Verdict:
    """Which of two designs for the same mission is better; ok=False when it is a tie or neither flies."""
    fa, fb = analyze(a), analyze(b)
    evidence = {"a": fa, "b": fb}
    if fa["feasible"] != fb["feasible"]:
        better = "a" if fa["feasible"] else "b"
        return Verdict(True, 1.0, f"{better}_only_feasible", {**evidence, "better": better})
    if not fa["feasible"]:
        return Verdict(False, 0.0, "neither_feasible", evidence)
    margin = (fa["L_over_D"] - fb["L_over_D"]) / max(fa["L_over_D"], fb["L_over_D"])
    if abs(margin) < MIN_LD_MARGIN:
        return Verdict(False, abs(margin), "tie", evidence)
    better = "a" if margin > 0 else "b"
    return Verdict(True, abs(margin), f"{better}_higher_L_over_D", {**evidence, "better": better})

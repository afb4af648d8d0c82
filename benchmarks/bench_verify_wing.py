"""Wing verdicts per second: `WingWorld.verify_many` over every core, the same in one process, and a
plain peer, all measured in the same run on records of the same kind.

    python benchmarks/bench_verify_wing.py [--n 300] [--peer-n 60] [--processes N]

A verdict is one rendered record checked from its own text: a pair (two designs) or a claim (one).
Records are rendered first (seeded) and the design cache is then emptied, and each measurement gets
its own records, so every timed verdict runs the solver. The peer is what the world would do without
any of its speed work: per design a fresh stock AeroBuildup (`wing.analyze_design(plain=True)`, NeuralFoil
called section by section), one design after another; only the airfoils' Kulfan fit is shared, as it
always was. Its verdicts are then compared with the fast path's on the same records.

The batched NeuralFoil calls want one BLAS thread (as the pool's workers have); this process asks
for it too, before numpy is imported, unless OPENBLAS_NUM_THREADS is already set. The three
measurements alternate in rounds, so load from other work on the machine hits them alike;
the load average at the start and the end is printed so readers can judge the noise. Pool start-up
(spawning workers that import AeroSandbox) is timed separately and excluded from the rate.
A call of fewer than `solver.POOL_MIN` designs stays in process (each round is n / 5 records, about
1.5 designs each), so below n ~ 3,500 the pooled line measures that choice, not the workers.
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported (see the docstring)

import touchstone.worlds.wing as wing
from touchstone.worlds.wing import aero, solver

ROUNDS = 5


def peer_verdicts(world: wing.WingWorld, records: list[dict]) -> list:
    """Each design through a fresh stock AeroBuildup, then the world's own verdict logic."""
    verdicts = []
    for rec in records:
        for d in wing.designs_of(rec):
            solver.cache[solver.cache_key(d)] = wing.analyze_design(d, plain=True)
        verdicts.append(world.verify_record(rec))
    return verdicts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="records per measurement of verify_many")
    p.add_argument("--peer-n", type=int, default=60, help="records for the (slow) plain peer")
    p.add_argument("--processes", type=int, default=wing.workers())
    args = p.parse_args()
    load = os.getloadavg()

    pooled_world, single_world = wing.WingWorld(processes=args.processes), wing.WingWorld(processes=1)
    rng = random.Random(0)
    for d in [pooled_world.sample(rng) for _ in range(4)]:  # import AeroSandbox, fit the airfoils
        wing.analyze(d)
        wing.analyze_design(d, plain=True)
    for name in wing.AIRFOILS:
        aero.prepare_airfoil(name)
    warm = [pooled_world.sample(rng) for _ in range(solver.POOL_MIN)]
    t = time.perf_counter()
    wing.analyze_many(warm, processes=args.processes)  # starts the pool (spawn + import in each worker)
    startup = time.perf_counter() - t

    records = pooled_world.render(random.Random(1), 2 * args.n + args.peer_n)
    solver.cache.clear()
    sets = {"pooled": records[: args.n], "single": records[args.n : 2 * args.n], "peer": records[2 * args.n :]}
    check = {
        "pooled": lambda recs: pooled_world.verify_many(recs),
        "single": lambda recs: single_world.verify_many(recs),
        "peer": lambda recs: peer_verdicts(single_world, recs),
    }
    seconds = dict.fromkeys(sets, 0.0)
    verdicts: dict[str, list] = {name: [] for name in sets}
    for k in range(ROUNDS):
        for name, recs in sets.items():
            part = recs[k * len(recs) // ROUNDS : (k + 1) * len(recs) // ROUNDS]
            t = time.perf_counter()
            verdicts[name] += check[name](part)
            seconds[name] += time.perf_counter() - t
    rate = {name: len(sets[name]) / seconds[name] for name in sets}

    solver.cache.clear()  # the fast path on the peer's records, to compare verdicts
    fast = pooled_world.verify_many(sets["peer"])
    agree = sum(a.to_dict() == b.to_dict() for a, b in zip(fast, verdicts["peer"]))
    ok = sum(v.ok for vs in verdicts.values() for v in vs)
    designs = sum(len(wing.designs_of(r)) for r in records)

    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores); "
        f"at end: {os.getloadavg()[0]:.2f}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
    )
    print(
        f"records: {args.n} per verify_many measurement, {args.peer_n} for the peer; "
        f"{sum('a' in r for r in records)} pairs and {sum('statement' in r for r in records)} claims, "
        f"{designs} designs; {ok}/{len(records)} verdicts agree with their labels"
    )
    print(f"plain peer, fresh AeroBuildup per design, 1 process: {rate['peer']:7.1f} verdicts/s   1.00x")
    print(
        f"verify_many, 1 process:                              {rate['single']:7.1f} verdicts/s "
        f"{rate['single'] / rate['peer']:6.2f}x"
    )
    print(
        f"verify_many, {args.processes} processes:                            {rate['pooled']:7.1f} "
        f"verdicts/s {rate['pooled'] / rate['peer']:6.2f}x  (pool start-up {startup:.1f} s, excluded)"
    )
    print(f"peer and verify_many give identical verdicts (figures included) on {agree}/{len(fast)} records")


if __name__ == "__main__":
    main()

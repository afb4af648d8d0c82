"""Wing verdicts per second, fanned out over every core, against one process running AeroBuildup
design after design (the peer), measured in the same run on the same designs.

    python benchmarks/bench_verify_wing.py [--n 300] [--processes N]

A verdict is `WingWorld.verify(design)`: one AeroBuildup run over the angle-of-attack grid, the
required-lift solve and the feasibility check. Designs are distinct, so the per-design cache never
hits; pool start-up (spawning workers that import AeroSandbox) is timed separately and excluded from
the steady-state rate, and reported.
"""

from __future__ import annotations

import argparse
import random
import time

import touchstone.worlds.wing as wing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="designs per measurement")
    p.add_argument("--processes", type=int, default=wing.workers())
    args = p.parse_args()

    world = wing.WingWorld()
    rng = random.Random(0)
    warm_n = 2 * wing.POOL_MIN  # enough to start the pool
    designs = [world.sample(rng) for _ in range(2 * args.n + warm_n)]
    warm, seq_designs, pool_designs = designs[:warm_n], designs[warm_n:warm_n + args.n], designs[warm_n + args.n:]

    for d in warm[:len(wing.AIRFOILS)]:  # import AeroSandbox, convert airfoils: not part of the rate
        world.verify(d)

    t = time.perf_counter()
    wing.analyze_many(warm, processes=args.processes)  # starts the pool (spawn + import in each worker)
    startup = time.perf_counter() - t

    # Alternate the two in halves, so that load from other work on the machine hits both alike.
    seq_time = pool_time = 0.0
    verdicts = []
    half = args.n // 2
    for k in (0, 1):
        t = time.perf_counter()
        for d in seq_designs[k * half:(k + 1) * half]:
            wing._analyze(d)
        seq_time += time.perf_counter() - t
        batch = pool_designs[k * half:(k + 1) * half]
        t = time.perf_counter()
        verdicts += world.verify_many(batch) if args.processes > 1 else [world.verify(d) for d in batch]
        pool_time += time.perf_counter() - t
    seq_rate, pool_rate = 2 * half / seq_time, 2 * half / pool_time

    feasible = sum(v.ok for v in verdicts)
    print(f"designs: {args.n} per measurement, {feasible} feasible in the pooled set")
    print(f"sequential AeroBuildup, 1 process:  {seq_rate:7.1f} verdicts/s")
    print(f"verify_many, {args.processes} processes:       {pool_rate:7.1f} verdicts/s "
          f"(pool start-up {startup:.1f} s, excluded)")
    print(f"ratio pooled / sequential:          {pool_rate / seq_rate:7.2f}x")


if __name__ == "__main__":
    main()

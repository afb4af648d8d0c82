"""The wing world's fast path: the same figures as a stock AeroBuildup run, and a record whose design
the solver rejects is a verdict, not a crash."""

from __future__ import annotations

import random
from collections import OrderedDict

from touchstone.worlds import get_world


def test_side_by_side_analyses_equal_stock_aerobuildup_runs():
    from touchstone.worlds.wing import analyze_design, side_by_side

    world, rng = get_world("wing"), random.Random(11)
    designs = [world.sample(rng) for _ in range(3)]
    designs += [world.mutate(d, rng) for d in designs]  # shared airfoils: pooled NeuralFoil calls
    assert side_by_side(designs) == [analyze_design(d, plain=True) for d in designs]


def test_verify_many_turns_a_rejected_design_into_an_unparseable_verdict():
    world = get_world("wing")
    statement = (
        "A wing with span 10.0 m, root chord 1.20 m, taper 0.00, sweep 5 deg, twist -2.0 deg, airfoil "
        "NACA 2412 can carry 4000 N at 50 m/s at 1000 m altitude, with angle of attack at most 10 deg "
        "and span at most 12.0 m and a stall margin of at least 20%."
    )
    [verdict] = world.verify_many([{"statement": statement, "label": True}])
    assert not verdict.ok and verdict.reason == "unparseable"


def test_the_analysis_cache_keeps_at_most_its_size_dropping_the_least_recently_used(monkeypatch):
    from touchstone.worlds.wing import solver

    monkeypatch.setattr(solver, "CACHE_SIZE", 3)
    monkeypatch.setattr(solver, "cache", OrderedDict())
    world, rng = get_world("wing"), random.Random(3)
    designs = [world.sample(rng) for _ in range(5)]
    for d in designs[:3]:
        solver.analyze(d)
    solver.analyze(designs[0])  # used again: now the most recent
    for d in designs[3:]:
        solver.analyze(d)
    assert len(solver.cache) == 3
    assert set(solver.cache) == {solver.cache_key(d) for d in (designs[0], designs[3], designs[4])}


def test_a_dead_pool_worker_is_replaced_and_its_chunks_asked_again(monkeypatch):
    """A worker killed mid-run breaks a ProcessPoolExecutor for good; the next call rebuilds the pool."""
    import os
    import signal

    from touchstone.worlds.wing import aero, solver

    monkeypatch.setattr(solver, "cache", OrderedDict())
    world, rng = get_world("wing"), random.Random(5)
    first = [world.sample(rng) for _ in range(solver.POOL_MIN)]
    solver.analyze_many(first, processes=2)  # starts the pool
    pool = solver.pool
    os.kill(next(iter(pool._processes)), signal.SIGKILL)
    try:
        second = [world.sample(rng) for _ in range(solver.POOL_MIN)]
        figures = solver.analyze_many(second, processes=2)
        assert solver.pool is not pool and len(figures) == len(second)
        assert figures[0] == aero.analyze_design(second[0])
    finally:
        solver.shutdown_pool()

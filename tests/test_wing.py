"""The wing world's fast path: the same figures as a stock AeroBuildup run, and a record whose design
the solver rejects is a verdict, not a crash."""

from __future__ import annotations

import random
from collections import OrderedDict

from touchstone.worlds import get_world


def _designs(seed: int, n: int) -> list[dict]:
    """Sampled designs, their mutations (other airfoils, twists, sweeps), and the corners of the
    sampler's range: every reason a design can fail, full sweep and twist, an untapered wing."""
    world, rng = get_world("wing"), random.Random(seed)
    designs = [world.sample(rng) for _ in range(n)]
    designs += [world.mutate(d, rng) for d in designs]
    base = designs[0]
    designs += [
        {**base, "weight": 200000},  # cannot lift
        {**base, "weight": 10},  # too much wing
        {**base, "max_span": base["span"] - 1},  # span limit
        {**base, "sweep": 40, "twist": -8.0, "taper": 1.0},
        {**base, "sweep": 0, "twist": 3.0, "taper": 0.2, "airfoil": "naca0009"},
    ]
    return designs


def test_side_by_side_analyses_equal_stock_aerobuildup_runs():
    """Every rounded figure of the vectorized batch equals a stock AeroBuildup run's."""
    from touchstone.worlds.wing import analyze_design, side_by_side

    designs = _designs(11, 20)
    fast, plain = side_by_side(designs), [analyze_design(d, plain=True) for d in designs]
    assert [f == p for f, p in zip(fast, plain)] == [True] * len(designs)
    assert {p["reason"] for p in plain} >= {"feasible", "cannot_lift", "too_much_wing", "span_limit"}


def test_vectorized_curves_equal_a_stock_aerobuildup_run_up_to_float_rounding():
    """The raw CL and CD curves, not only the rounded figures: a slip in the written-out buildup that
    rounding happens to hide still fails here."""
    import aerosandbox as asb
    import numpy as np

    from touchstone.worlds.wing import aero, buildup

    designs = _designs(12, 6)
    airfoils = [aero.prepare_airfoil(d["airfoil"]) for d in designs]
    cl, cd, area, density = buildup.curves(
        designs, [aero.tip_x(d) for d in designs], [a for a, _ in airfoils], [t for _, t in airfoils], aero.ALPHAS
    )
    for i, d in enumerate(designs):
        b, cr, af = d["span"], d["root_chord"], airfoils[i][0]
        ct = cr * d["taper"]
        x_tip = (b / 2) * np.tan(np.radians(d["sweep"])) + 0.25 * (cr - ct)
        wing = asb.Wing(
            symmetric=True,
            xsecs=[
                asb.WingXSec(xyz_le=[0, 0, 0], chord=cr, twist=0, airfoil=af),
                asb.WingXSec(xyz_le=[x_tip, b / 2, 0], chord=ct, twist=d["twist"], airfoil=af),
            ],
        )
        air = asb.Atmosphere(altitude=d["altitude"], method="isa")
        plane = asb.Airplane(wings=[wing], s_ref=wing.area(), c_ref=wing.mean_aerodynamic_chord(), b_ref=b)
        point = asb.OperatingPoint(atmosphere=air, velocity=d["speed"], alpha=np.array(aero.ALPHAS))
        stock = asb.AeroBuildup(airplane=plane, op_point=point).run()
        np.testing.assert_allclose(cl[i], stock["CL"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(cd[i], stock["CD"], rtol=1e-12)
        np.testing.assert_allclose([area[i], density[i]], [wing.area(), air.density()], rtol=1e-14)


def test_a_rejected_design_in_a_batch_is_its_own_exception():
    from touchstone.worlds.wing import analyze_design, side_by_side

    good = _designs(13, 1)[0]
    results = side_by_side([good, {**good, "taper": 0.0}, {**good, "airfoil": "clarky"}, good])
    assert isinstance(results[1], ValueError) and isinstance(results[2], ValueError)
    assert results[0] == results[3] == analyze_design(good, plain=True)


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

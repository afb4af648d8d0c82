"""The wing world's fast path: the same figures as a stock AeroBuildup run, and a record whose design
the solver rejects is a verdict, not a crash."""

from __future__ import annotations

import random

from touchstone.worlds import get_world


def test_side_by_side_analyses_equal_stock_aerobuildup_runs():
    from touchstone.worlds.wing import _analyze, _side_by_side

    world, rng = get_world("wing"), random.Random(11)
    designs = [world.sample(rng) for _ in range(3)]
    designs += [world.mutate(d, rng) for d in designs]  # shared airfoils: pooled NeuralFoil calls
    assert _side_by_side(designs) == [_analyze(d, plain=True) for d in designs]


def test_verify_many_turns_a_rejected_design_into_an_unparseable_verdict():
    world = get_world("wing")
    statement = ("A wing with span 10.0 m, root chord 1.20 m, taper 0.00, sweep 5 deg, twist -2.0 deg, airfoil "
                 "NACA 2412 can carry 4000 N at 50 m/s at 1000 m altitude, with angle of attack at most 10 deg "
                 "and span at most 12.0 m and a stall margin of at least 20%.")
    [verdict] = world.verify_many([{"statement": statement, "label": True}])
    assert not verdict.ok and verdict.reason == "unparseable"

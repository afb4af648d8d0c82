"""Wings: a design must carry its weight at cruise; the better design does it more efficiently.

A design is a dict (lengths in m, angles in degrees, speed in m/s, weight in N):
    {"span": 10.0, "root_chord": 1.2, "taper": 0.5, "sweep": 5, "twist": -2.0, "airfoil": "naca2412",
     "speed": 50, "altitude": 2000, "weight": 4000, "alpha_limit": 10, "max_span": 14.0}
`sweep` is the quarter-chord sweep, `twist` the tip's incidence relative to the root (negative is
washout); `alpha_limit` and `max_span` are the mission's constraints.

One solver, always: AeroSandbox `AeroBuildup` with NeuralFoil section aerodynamics (offline), run once
per design over a grid of angles of attack. Required lift = weight, so CL_required = W / (q S); the
required angle of attack and the drag there are interpolated along the grid's rising CL branch, and
CL_max is the grid's peak (an estimate: AeroBuildup's post-stall model, not a test). A design is
feasible when it can make CL_required, at no more than `alpha_limit`, with a stall margin
(CL_max / CL_required - 1) of at least `MIN_STALL_MARGIN`, within `max_span`. Of two designs for the
same mission the better one is feasible when the other is not, else has the higher L/D by at least
`MIN_LD_MARGIN` (closer calls are "ambiguous" and never rendered).

Guaranteed: every rendered record is re-verified from its own text (designs are rounded to the
precision they are written with, so text and item are the same design). Not covered: structures,
stability and control, and any flight condition but the one cruise point a mission states.

The package: `aero` runs designs through the solver (a batch at once, with `buildup`), `solver` caches
analyses and fans them out over processes and compares two designs, `world` writes and reads designs
as text and renders the records.
"""

from touchstone.worlds.wing.aero import (
    AIRFOILS,
    DEFAULTS,
    DESIGN_KEYS,
    MIN_STALL_MARGIN,
    MISSION_KEYS,
    analyze_design,
    side_by_side,
)
from touchstone.worlds.wing.solver import (
    MIN_LD_MARGIN,
    analyze,
    analyze_many,
    compare,
    workers,
)
from touchstone.worlds.wing.world import (
    CLAIM_RE,
    PAIR_PROMPT_RE,
    WingWorld,
    describe,
    designs_of,
    mission,
    parse_design,
    plot_wings,
    round_design,
)

__all__ = [
    "AIRFOILS",
    "CLAIM_RE",
    "DEFAULTS",
    "DESIGN_KEYS",
    "MIN_LD_MARGIN",
    "MIN_STALL_MARGIN",
    "MISSION_KEYS",
    "PAIR_PROMPT_RE",
    "WingWorld",
    "analyze",
    "analyze_design",
    "analyze_many",
    "compare",
    "describe",
    "designs_of",
    "mission",
    "parse_design",
    "plot_wings",
    "round_design",
    "side_by_side",
    "workers",
]

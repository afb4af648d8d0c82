"""One wing design through AeroSandbox's `AeroBuildup` with NeuralFoil section aerodynamics (offline),
over a grid of angles of attack; the figures a feasibility call needs (`figures`).

Two paths to the same figures. `analyze_design(plain=True)` is the stock run: one `AeroBuildup` per
design, NeuralFoil called section by section. `side_by_side` (and `analyze_design`) analyses a batch
of designs at once (`touchstone.worlds.wing.buildup`): AeroBuildup's steps as arrays over all designs
and one NeuralFoil call for every section of every design, ~0.25 ms a design against ~8 ms stock.
The solver and the angle grid are unchanged: every figure equals the stock run's after rounding, and
the raw CL and CD curves differ only by float rounding (~1e-14 relative; vectorized matrix products
and array functions round differently). In-process batches use the caller's BLAS: on a busy machine
a multi-threaded OpenBLAS makes them several times slower, so set OPENBLAS_NUM_THREADS=1 there (the
benchmark and the pool's workers do).
"""

from __future__ import annotations

import functools
import math
import re

ALPHAS = [-4.0 + 1.5 * i for i in range(17)]  # -4 .. 20 degrees, one vectorized AeroBuildup call
MIN_STALL_MARGIN = 0.2
AIRFOILS = ["naca0009", "naca0012", "naca2410", "naca2412", "naca2415", "naca4412", "naca4415", "naca6409"]
DESIGN_KEYS = ("span", "root_chord", "taper", "sweep", "twist", "airfoil")
MISSION_KEYS = ("speed", "altitude", "weight", "alpha_limit", "max_span")
DEFAULTS = {"alpha_limit": 10, "max_span": 1e9}


@functools.lru_cache(maxsize=64)
def _stock(name: str):
    import aerosandbox as asb

    if not re.fullmatch(r"naca\d{4}", name):
        raise ValueError(f"airfoil must be a NACA 4-digit name like 'naca2412', got {name!r}")
    # Fitting Kulfan parameters is the slow part of NeuralFoil on coordinates; do it once per airfoil.
    return asb.Airfoil(name).to_kulfan_airfoil()


@functools.lru_cache(maxsize=64)
def prepare_airfoil(name: str) -> tuple:
    """The stock Kulfan airfoil and its max_thickness (which NeuralFoil's wave drag asks), computed once."""
    k = _stock(name)
    return k, float(k.max_thickness())


def tip_x(d: dict) -> float:
    """The tip's leading edge behind the root's, for a quarter-chord sweep of d["sweep"] degrees."""
    cr = float(d["root_chord"])
    return (float(d["span"]) / 2) * math.tan(math.radians(float(d["sweep"]))) + 0.25 * (cr - cr * float(d["taper"]))


def _checked(design: dict) -> tuple[dict, str]:
    """The design with the mission's defaults, and its airfoil's name; raises as a stock run would."""
    d = {**DEFAULTS, **design}
    for key in DESIGN_KEYS + ("speed", "altitude", "weight"):
        if key not in d:
            raise KeyError(key)
    b, cr, taper = float(d["span"]), float(d["root_chord"]), float(d["taper"])
    if not (b > 0 and cr > 0 and 0 < taper <= 1 and d["speed"] > 0 and d["weight"] > 0):
        raise ValueError("span, root_chord, speed and weight must be positive and taper in (0, 1]")
    return d, str(d["airfoil"]).lower().replace(" ", "")


def side_by_side(designs: list[dict]) -> list:
    """`analyze_design` of each design, or the exception it raised: all of them in one vectorized buildup."""
    from touchstone.worlds.wing import buildup

    results: list = [None] * len(designs)
    ok, airfoils = [], []
    for i, design in enumerate(designs):
        try:
            d, name = _checked(design)
            airfoils.append(prepare_airfoil(name))
            ok.append((i, d))
        except Exception as e:  # noqa: BLE001 - handed back to the caller, who raises it as its own
            results[i] = e
    if ok:
        try:
            cl, cd, area, density = buildup.curves(
                [d for _, d in ok],
                [tip_x(d) for _, d in ok],
                [a for a, _ in airfoils],
                [t for _, t in airfoils],
                ALPHAS,
            )
            for row, (i, d) in enumerate(ok):
                results[i] = figures(d, cl[row], cd[row], area[row], density[row])
        except Exception as e:  # noqa: BLE001 - as above, for every design of the batch
            for i, _ in ok:
                results[i] = e
    return results


def analyze_design(design: dict, plain: bool = False) -> dict:
    """One design through AeroBuildup. plain=True builds it from stock AeroSandbox objects, NeuralFoil
    called directly, nothing remembered: the reference the fast path (`side_by_side`) is measured against."""
    if not plain:
        [result] = side_by_side([design])
        if isinstance(result, Exception):
            raise result
        return result
    import aerosandbox as asb
    import numpy as np

    d, name = _checked(design)
    b, cr, taper = float(d["span"]), float(d["root_chord"]), float(d["taper"])
    atmosphere, af = asb.Atmosphere(altitude=float(d["altitude"]), method="isa"), _stock(name)
    ct = cr * taper
    x_tip = tip_x(d)
    wing = asb.Wing(
        symmetric=True,
        xsecs=[
            asb.WingXSec(xyz_le=[0, 0, 0], chord=cr, twist=0, airfoil=af),
            asb.WingXSec(xyz_le=[x_tip, b / 2, 0], chord=ct, twist=float(d["twist"]), airfoil=af),
        ],
    )
    area = wing.area()
    airplane = asb.Airplane(wings=[wing], s_ref=area, c_ref=wing.mean_aerodynamic_chord(), b_ref=b)
    aero = asb.AeroBuildup(
        airplane=airplane,
        op_point=asb.OperatingPoint(atmosphere=atmosphere, velocity=float(d["speed"]), alpha=np.array(ALPHAS)),
    ).run()
    return figures(d, aero["CL"], aero["CD"], area, atmosphere.density())


def figures(d: dict, cl, cd, area, density) -> dict:
    """The figures of design d (defaults filled in) from its CL and CD over ALPHAS, its wing area and
    the air's density."""
    import numpy as np

    b = float(d["span"])
    cl, cd = np.asarray(cl, float), np.asarray(cd, float)
    alphas = np.array(ALPHAS)
    q = 0.5 * float(density) * float(d["speed"]) ** 2
    cl_req = float(d["weight"]) / (q * area)
    peak = int(np.argmax(cl))
    cl_max = float(cl[peak])
    cl_req, area = float(cl_req), float(area)
    common = {
        "CL_required": round(cl_req, 4),
        "CL_max": round(cl_max, 4),
        "wing_area": round(area, 3),
        "wing_loading": round(float(d["weight"]) / area, 1),
        "aspect_ratio": round(b * b / area, 2),
        "stall_margin": round(cl_max / cl_req - 1, 3),
        "dynamic_pressure": round(q, 1),
    }
    rising = np.maximum.accumulate(cl[: peak + 1])  # the pre-stall branch, made monotone for interpolation
    if cl_req > cl_max or cl_req < rising[0]:
        return {
            **common,
            "feasible": False,
            "reason": "cannot_lift" if cl_req > cl_max else "too_much_wing",
            "alpha_required": None,
            "CL": None,
            "CD": None,
            "L_over_D": None,
        }
    alpha_req = float(np.interp(cl_req, rising, alphas[: peak + 1]))
    cd_req = float(np.interp(alpha_req, alphas, cd))
    reason = (
        "span_limit"
        if b > float(d["max_span"])
        else "alpha_limit"
        if alpha_req > float(d["alpha_limit"])
        else "stall_margin"
        if common["stall_margin"] < MIN_STALL_MARGIN
        else "feasible"
    )
    return {
        **common,
        "feasible": reason == "feasible",
        "reason": reason,
        "alpha_required": round(alpha_req, 2),
        "CL": round(cl_req, 4),
        "CD": round(cd_req, 5),
        "L_over_D": round(cl_req / cd_req, 2),
    }

"""One wing design through AeroSandbox's `AeroBuildup` with NeuralFoil section aerodynamics (offline),
over a grid of angles of attack (`analyze_design`); the figures a feasibility call needs.

Speed: most of a stock run is spent in NeuralFoil calls, which cost nearly the same however few their
angles, and the rest mostly in the ISA atmosphere and the cross-section frames, which AeroBuildup
recomputes dozens of times a run. So a chunk of designs runs side by side (`side_by_side`), one
AeroBuildup each in its own thread, and their NeuralFoil calls are answered by one vectorized call per
airfoil (`_Batch`); the mirrored half-wing's calls, identical to the first half's, are answered from
memory, and atmosphere and frames are computed once (`_classes`). The solver and the angle grid are
unchanged: every figure equals a stock run's (`analyze_design(plain=True)`) after rounding, and the raw
CL and CD curves differ only by float rounding (vectorized matrix products round differently).
In-process batches use the caller's BLAS: on a busy machine a multi-threaded OpenBLAS makes them
several times slower, so set OPENBLAS_NUM_THREADS=1 there (the benchmark does).
"""

from __future__ import annotations

import functools
import math
import re
import threading

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


@functools.cache
def _classes():
    """Stock AeroSandbox classes that remember what AeroBuildup asks them more than once (the answers are
    the stock ones). Defined on first use, so that importing this module does not import AeroSandbox."""
    import aerosandbox as asb

    class Air(asb.Atmosphere):
        # AeroBuildup asks one air for its density, temperature... ~60 times a run: a third of its own time.
        def _once(self, name):
            memo = self.__dict__.setdefault("_memo", {})
            if name not in memo:
                memo[name] = getattr(asb.Atmosphere, name)(self)
            return memo[name]

        def pressure(self):
            return self._once("pressure")

        def temperature(self):
            return self._once("temperature")

        def density(self):
            return self._once("density")

        def speed_of_sound(self):
            return self._once("speed_of_sound")

        def dynamic_viscosity(self):
            return self._once("dynamic_viscosity")

    class Wing(asb.Wing):
        # Span, area, chord and AeroBuildup recompute each cross-section's frame ~12 times a run.
        def _compute_frame_of_WingXSec(self, index):
            memo = self.__dict__.setdefault("_frames", {})
            if index not in memo:
                memo[index] = super()._compute_frame_of_WingXSec(index)
                for axis in memo[index]:
                    axis.setflags(write=False)  # shared from now on: an in-place edit must fail loudly
            return memo[index]

    class Airfoil(asb.KulfanAirfoil):
        # Inside `side_by_side`, NeuralFoil questions go to the shared batch; anywhere else, straight through.
        def get_aero_from_neuralfoil(self, alpha, Re, mach=0.0, model_size="large", control_surfaces=None, **kwargs):
            batch = getattr(_thread, "batch", None)
            if batch is None or control_surfaces or kwargs:
                return super().get_aero_from_neuralfoil(
                    alpha=alpha, Re=Re, mach=mach, model_size=model_size, control_surfaces=control_surfaces, **kwargs
                )
            return batch.ask(self, alpha, Re, mach, model_size)

    return Air, Wing, Airfoil


@functools.lru_cache(maxsize=64)
def prepare_airfoil(name: str):
    k = _stock(name)
    return _classes()[2](
        name=k.name,
        lower_weights=k.lower_weights,
        upper_weights=k.upper_weights,
        leading_edge_weight=k.leading_edge_weight,
        TE_thickness=k.TE_thickness,
        N1=k.N1,
        N2=k.N2,
    )


@functools.lru_cache(maxsize=256)
def _air(altitude: float):
    return _classes()[0](altitude=altitude, method="isa")


_thread = threading.local()


class _Batch:
    """AeroBuildup runs side by side, one thread each. A NeuralFoil call costs ~2.5 ms however few its
    angles, and a run makes 4 calls of 17 angles; so a thread's question waits until every running
    thread has asked (or finished), and one vectorized call per airfoil answers them all. The mirrored
    half of the symmetric wing asks exactly what the first half asked and is answered from memory."""

    def __init__(self, running: int):
        self.cond = threading.Condition()
        self.running = running
        self.asked: list[tuple] = []

    def ask(self, airfoil, alpha, Re, mach, model_size) -> dict:
        import numpy as np

        alpha, Re, mach = (np.array(x, float) for x in np.broadcast_arrays(alpha, Re, mach))
        key = (airfoil.name, model_size, alpha.tobytes(), Re.tobytes(), mach.tobytes())
        if key not in _thread.memo:
            slot: dict = {}
            with self.cond:
                self.asked.append((airfoil, model_size, alpha, Re, mach, slot))
                self._answer_if_all_asked()
                while not slot:
                    self.cond.wait()
            if "error" in slot:
                raise slot["error"]
            _thread.memo[key] = slot["answer"]
        return _thread.memo[key]

    def done(self) -> None:
        with self.cond:
            self.running -= 1
            self._answer_if_all_asked()

    def _answer_if_all_asked(self) -> None:  # called with self.cond held
        import aerosandbox as asb
        import numpy as np

        if not self.asked or len(self.asked) < self.running:
            return
        asked, self.asked = self.asked, []
        groups: dict = {}
        for question in asked:
            groups.setdefault((question[0].name, question[1]), []).append(question)
        for (_, model_size), questions in groups.items():
            alpha, Re, mach = (np.concatenate([q[i].ravel() for q in questions]) for i in (2, 3, 4))
            try:  # the stock method, defaults as AeroBuildup leaves them
                out = asb.KulfanAirfoil.get_aero_from_neuralfoil(
                    questions[0][0], alpha=alpha, Re=Re, mach=mach, model_size=model_size
                )
                start = 0
                for _, _, alpha, _, _, slot in questions:
                    part = slice(start, start + alpha.size)
                    slot["answer"] = {k: np.reshape(out[k][part], alpha.shape) for k in ("CL", "CD", "CM")}
                    start += alpha.size
            except Exception as e:  # noqa: BLE001 - each asker raises it, as its own call would have
                for *_, slot in questions:
                    slot["error"] = e
        self.cond.notify_all()


def side_by_side(designs: list[dict]) -> list:
    """`analyze_design` of each design, or the exception it raised: the runs side by side, NeuralFoil pooled."""
    results: list = [None] * len(designs)
    batch = _Batch(len(designs))

    def run(i: int) -> None:
        _thread.batch, _thread.memo = batch, {}
        try:
            results[i] = analyze_design(designs[i])
        except Exception as e:  # noqa: BLE001 - handed back to the caller, who raises it as its own
            results[i] = e
        finally:
            batch.done()

    _classes()  # defined once, before the threads race to it
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(designs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def analyze_design(design: dict, plain: bool = False) -> dict:
    """One design through AeroBuildup. plain=True builds it from stock AeroSandbox objects, NeuralFoil
    called directly, nothing remembered: the reference the fast path is measured against."""
    import aerosandbox as asb
    import numpy as np

    d = {**DEFAULTS, **design}
    for key in DESIGN_KEYS + ("speed", "altitude", "weight"):
        if key not in d:
            raise KeyError(key)
    b, cr, taper = float(d["span"]), float(d["root_chord"]), float(d["taper"])
    if not (b > 0 and cr > 0 and 0 < taper <= 1 and d["speed"] > 0 and d["weight"] > 0):
        raise ValueError("span, root_chord, speed and weight must be positive and taper in (0, 1]")
    name = str(d["airfoil"]).lower().replace(" ", "")
    if plain:
        atmosphere, Wing, af = asb.Atmosphere(altitude=float(d["altitude"]), method="isa"), asb.Wing, _stock(name)
    else:
        atmosphere, Wing, af = _air(float(d["altitude"])), _classes()[1], prepare_airfoil(name)
    ct = cr * taper
    x_tip = (b / 2) * math.tan(math.radians(float(d["sweep"]))) + 0.25 * (cr - ct)  # quarter-chord sweep
    wing = Wing(
        symmetric=True,
        xsecs=[
            asb.WingXSec(xyz_le=[0, 0, 0], chord=cr, twist=0, airfoil=af),
            asb.WingXSec(xyz_le=[x_tip, b / 2, 0], chord=ct, twist=float(d["twist"]), airfoil=af),
        ],
    )
    area = wing.area()
    airplane = asb.Airplane(wings=[wing], s_ref=area, c_ref=wing.mean_aerodynamic_chord(), b_ref=b)
    alphas = np.array(ALPHAS)
    aero = asb.AeroBuildup(
        airplane=airplane, op_point=asb.OperatingPoint(atmosphere=atmosphere, velocity=float(d["speed"]), alpha=alphas)
    ).run()
    cl, cd = np.asarray(aero["CL"], float), np.asarray(aero["CD"], float)
    q = 0.5 * float(atmosphere.density()) * float(d["speed"]) ** 2
    cl_req = float(d["weight"]) / (q * area)
    peak = int(np.argmax(cl))
    cl_max = float(cl[peak])
    cl_req, area = float(cl_req), float(area)
    figures = {
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
            **figures,
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
        if figures["stall_margin"] < MIN_STALL_MARGIN
        else "feasible"
    )
    return {
        **figures,
        "feasible": reason == "feasible",
        "reason": reason,
        "alpha_required": round(alpha_req, 2),
        "CL": round(cl_req, 4),
        "CD": round(cd_req, 5),
        "L_over_D": round(cl_req / cd_req, 2),
    }

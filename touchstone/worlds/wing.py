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
weight that depends on the design, fuselage and tail, compressibility beyond AeroBuildup's model.
Speed: airfoils are converted to NeuralFoil's Kulfan parameters once per process and analyses are
cached by design; `analyze_many` fans designs out over a process pool (spawned, so it is safe beside
torch threads).
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import random
import re
from concurrent.futures import ProcessPoolExecutor

from touchstone.records import claim_record, pair_record
from touchstone.synth import in_split
from touchstone.worlds.base import Verdict, World

ALPHAS = [-4.0 + 1.5 * i for i in range(17)]  # -4 .. 20 degrees, one vectorized AeroBuildup call
MIN_STALL_MARGIN = 0.2
MIN_LD_MARGIN = 0.03  # relative L/D difference below which two feasible designs are a tie
AIRFOILS = ["naca0009", "naca0012", "naca2410", "naca2412", "naca2415", "naca4412", "naca4415", "naca6409"]
DESIGN_KEYS = ("span", "root_chord", "taper", "sweep", "twist", "airfoil")
MISSION_KEYS = ("speed", "altitude", "weight", "alpha_limit", "max_span")
DEFAULTS = {"alpha_limit": 10, "max_span": 1e9}
POOL_MIN = 64  # below this many designs, starting the pool (seconds) costs more than it saves


def _round(design: dict) -> dict:
    """Round to the precision the text uses, so the written design is the analysed one."""
    d = dict(design)
    for key, digits in (("span", 1), ("root_chord", 2), ("taper", 2), ("twist", 1), ("max_span", 1)):
        d[key] = round(float(d[key]), digits)
    for key in ("sweep", "speed", "altitude", "weight", "alpha_limit"):
        d[key] = int(round(float(d[key])))
    return d


# ------------------------------------------------------------------------------------------- solver
@functools.lru_cache(maxsize=64)
def _airfoil(name: str):
    import aerosandbox as asb

    if not re.fullmatch(r"naca\d{4}", name):
        raise ValueError(f"airfoil must be a NACA 4-digit name like 'naca2412', got {name!r}")
    # Fitting Kulfan parameters is the slow part of NeuralFoil on coordinates; do it once per airfoil.
    return asb.Airfoil(name).to_kulfan_airfoil()


def _analyze(design: dict) -> dict:
    import aerosandbox as asb
    import numpy as np

    d = {**DEFAULTS, **design}
    for key in DESIGN_KEYS + ("speed", "altitude", "weight"):
        if key not in d:
            raise KeyError(key)
    b, cr, taper = float(d["span"]), float(d["root_chord"]), float(d["taper"])
    if not (b > 0 and cr > 0 and 0 < taper <= 1 and d["speed"] > 0 and d["weight"] > 0):
        raise ValueError("span, root_chord, speed and weight must be positive and taper in (0, 1]")
    af = _airfoil(str(d["airfoil"]).lower().replace(" ", ""))
    ct = cr * taper
    x_tip = (b / 2) * math.tan(math.radians(float(d["sweep"]))) + 0.25 * (cr - ct)  # quarter-chord sweep
    wing = asb.Wing(symmetric=True, xsecs=[
        asb.WingXSec(xyz_le=[0, 0, 0], chord=cr, twist=0, airfoil=af),
        asb.WingXSec(xyz_le=[x_tip, b / 2, 0], chord=ct, twist=float(d["twist"]), airfoil=af)])
    area = wing.area()
    airplane = asb.Airplane(wings=[wing], s_ref=area, c_ref=wing.mean_aerodynamic_chord(), b_ref=b)
    atmosphere = asb.Atmosphere(altitude=float(d["altitude"]), method="isa")
    alphas = np.array(ALPHAS)
    aero = asb.AeroBuildup(airplane=airplane, op_point=asb.OperatingPoint(
        atmosphere=atmosphere, velocity=float(d["speed"]), alpha=alphas)).run()
    cl, cd = np.asarray(aero["CL"], float), np.asarray(aero["CD"], float)
    q = 0.5 * float(atmosphere.density()) * float(d["speed"]) ** 2
    cl_req = float(d["weight"]) / (q * area)
    peak = int(np.argmax(cl))
    cl_max = float(cl[peak])
    cl_req, area = float(cl_req), float(area)
    figures = {"CL_required": round(cl_req, 4), "CL_max": round(cl_max, 4), "wing_area": round(area, 3),
               "wing_loading": round(float(d["weight"]) / area, 1), "aspect_ratio": round(b * b / area, 2),
               "stall_margin": round(cl_max / cl_req - 1, 3), "dynamic_pressure": round(q, 1)}
    rising = np.maximum.accumulate(cl[:peak + 1])  # the pre-stall branch, made monotone for interpolation
    if cl_req > cl_max or cl_req < rising[0]:
        return {**figures, "feasible": False, "reason": "cannot_lift" if cl_req > cl_max else "too_much_wing",
                "alpha_required": None, "CL": None, "CD": None, "L_over_D": None}
    alpha_req = float(np.interp(cl_req, rising, alphas[:peak + 1]))
    cd_req = float(np.interp(alpha_req, alphas, cd))
    reason = ("span_limit" if b > float(d["max_span"]) else "alpha_limit" if alpha_req > float(d["alpha_limit"])
              else "stall_margin" if figures["stall_margin"] < MIN_STALL_MARGIN else "feasible")
    return {**figures, "feasible": reason == "feasible", "reason": reason, "alpha_required": round(alpha_req, 2),
            "CL": round(cl_req, 4), "CD": round(cd_req, 5), "L_over_D": round(cl_req / cd_req, 2)}


_cache: dict[str, dict] = {}
_pool: ProcessPoolExecutor | None = None


def _key(design: dict) -> str:
    return repr(sorted({**DEFAULTS, **design}.items()))


def analyze(design: dict) -> dict:
    """The figures a person would quote for one design (CL, CD, L/D, alpha, loading, stall margin...)."""
    key = _key(design)
    if key not in _cache:
        _cache[key] = _analyze(design)
    return _cache[key]


def _one_thread() -> None:
    # Each worker is one core's worth of work; threaded BLAS inside it would only fight its siblings.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def analyze_many(designs: list[dict], processes: int | None = None) -> list[dict]:
    """`analyze` for many designs, over a process pool of `processes` (default: every core)."""
    global _pool
    processes = processes or workers()
    todo = list({_key(d): d for d in designs if _key(d) not in _cache}.items())
    if len(todo) >= POOL_MIN and processes > 1:
        if _pool is None or _pool._max_workers != processes:
            import multiprocessing

            _pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_one_thread)
            atexit.register(_pool.shutdown)  # shut down before the interpreter tears modules down
        for (key, _), result in zip(todo, _pool.map(_analyze, [d for _, d in todo],
                                                     chunksize=max(1, len(todo) // (4 * processes)))):
            _cache[key] = result
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


# --------------------------------------------------------------------------------------------- text
def describe(d: dict) -> str:
    return (f"span {d['span']:.1f} m, root chord {d['root_chord']:.2f} m, taper {d['taper']:.2f}, "
            f"sweep {d['sweep']} deg, twist {d['twist']:.1f} deg, airfoil NACA {d['airfoil'][4:]}")


def mission(d: dict) -> str:
    return (f"carry {d['weight']} N at {d['speed']} m/s at {d['altitude']} m altitude, with angle of attack "
            f"at most {d['alpha_limit']} deg and span at most {d['max_span']:.1f} m")


NUM = r"(-?\d+(?:\.\d+)?)"
DESIGN_RE = (rf"span {NUM} m, root chord {NUM} m, taper {NUM}, sweep {NUM} deg, twist {NUM} deg, "
             r"airfoil NACA (\d{4})")
MISSION_RE = rf"carry {NUM} N at {NUM} m/s at {NUM} m altitude, with angle of attack at most {NUM} deg and span at most {NUM} m"
PAIR_PROMPT_RE = re.compile(rf"A wing must {MISSION_RE}\. Which design is better\?")
CLAIM_RE = re.compile(rf"A wing with {DESIGN_RE} can {MISSION_RE} and a stall margin of at least 20%\.")


def _design(values) -> dict:
    span, chord, taper, sweep, twist, digits = values
    return {"span": float(span), "root_chord": float(chord), "taper": float(taper), "sweep": int(float(sweep)),
            "twist": float(twist), "airfoil": f"naca{digits}"}


def _mission(values) -> dict:
    weight, speed, altitude, alpha_limit, max_span = values
    return {"weight": int(float(weight)), "speed": int(float(speed)), "altitude": int(float(altitude)),
            "alpha_limit": int(float(alpha_limit)), "max_span": float(max_span)}


def parse_design(text: str) -> dict:
    m = re.fullmatch(DESIGN_RE, text.strip())
    if not m:
        raise ValueError(f"not a wing design: {text[:80]!r}")
    return _design(m.groups())


# -------------------------------------------------------------------------------------------- world
class WingWorld(World):
    name = "wing"
    version = 1
    split = "train"

    def sample(self, rng: random.Random) -> dict:
        speed = rng.randint(20, 80)
        altitude = rng.choice([0, 500, 1000, 2000, 3000, 5000])
        weight = rng.randrange(500, 20000, 10)
        rho = 1.225 * math.exp(-altitude / 8500)  # only to size the wing near a sensible lift coefficient
        area = weight / (0.5 * rho * speed ** 2 * rng.uniform(0.2, 1.3))
        aspect = rng.uniform(5, 14)
        span = math.sqrt(aspect * area)
        taper = rng.uniform(0.3, 1.0)
        item = {"span": span, "root_chord": 2 * area / (span * (1 + taper)), "taper": taper,
                "sweep": rng.choice([0, 0, 5, 10, 20, 30]), "twist": rng.uniform(-5, 1), "airfoil": rng.choice(AIRFOILS),
                "speed": speed, "altitude": altitude, "weight": weight, "alpha_limit": rng.choice([8, 10, 12]),
                "max_span": span * rng.uniform(0.9, 1.5)}
        return _round(item)

    def mutate(self, item: dict, rng: random.Random) -> dict:
        """The same mission, a different wing: one or two of span, chord, taper, sweep, twist, airfoil."""
        new = dict(item)
        for key in rng.sample(["span", "root_chord", "taper", "sweep", "twist", "airfoil"], rng.choice([1, 2])):
            if key == "airfoil":
                new[key] = rng.choice([a for a in AIRFOILS if a != item[key]])
            elif key == "sweep":
                new[key] = rng.choice([s for s in (0, 5, 10, 20, 30, 40) if s != item[key]])
            elif key == "twist":
                new[key] = item[key] + rng.choice([-3, -2, -1, 1, 2])
            elif key == "taper":
                new[key] = min(1.0, max(0.2, item[key] * rng.uniform(0.5, 1.6)))
            else:
                new[key] = item[key] * rng.choice([0.6, 0.75, 0.85, 1.15, 1.3, 1.5])
        new = _round(new)
        return new if new != item else self.mutate(item, rng)

    def verify(self, item: dict) -> Verdict:
        """A single design: is it feasible? score = L/D at the required lift (0 when it cannot fly)."""
        f = analyze(item)
        return Verdict(f["feasible"], f["L_over_D"] or 0.0, f["reason"], f)

    def _record(self, item: dict, other: dict, rng: random.Random) -> dict | None:
        if rng.random() < 0.6:
            label = rng.choice("ab")
            a, b = (item, other) if label == "a" else (other, item)
            v = compare(a, b)
            if not v.ok:
                return None
            rec = pair_record(f"A wing must {mission(item)}. Which design is better?", describe(a), describe(b),
                              v.evidence["better"], world=self.name, kind="better_design", source="aerobuildup")
        else:
            shown = rng.choice([item, other])
            rec = claim_record(f"A wing with {describe(shown)} can {mission(shown)} and a stall margin of at least "
                               f"20%.", analyze(shown)["feasible"], world=self.name, kind="feasible",
                               source="aerobuildup")
        rec["verdict"] = self.verify_record(rec).to_dict()
        return rec if rec["verdict"]["ok"] else None

    def render(self, rng: random.Random, n: int) -> list[dict]:
        out: list[dict] = []
        while len(out) < n:
            # Sample a batch, analyse it in parallel, then write the records (ties are dropped).
            batch = []
            while len(batch) < max(8, int(1.5 * (n - len(out)))):
                item = self.sample(rng)
                if in_split(self, item):
                    batch.append((item, self.mutate(item, rng)))
            analyze_many([d for pair in batch for d in pair])
            for item, other in batch:
                rec = self._record(item, other, rng)
                if rec is not None and len(out) < n:
                    out.append(rec)
        return out

    def verify_record(self, record: dict) -> Verdict:
        """Parse the designs and mission from the record's text, re-run the solver, compare the label.
        Pair records whose a/b are design dicts (not text) are accepted too."""
        try:
            if "statement" in record:
                m = CLAIM_RE.fullmatch(record["statement"].strip())
                if not m:
                    raise ValueError("not a wing feasibility statement")
                design = {**_design(m.groups()[:6]), **_mission(m.groups()[6:])}
                v = self.verify(design)
                agree = v.ok == bool(record["label"])
                return Verdict(agree, v.score, "agrees" if agree else "label_disagrees", v.evidence)
            a, b = record["a"], record["b"]
            if isinstance(a, dict) and isinstance(b, dict):
                v = compare(a, b)
            else:
                m = PAIR_PROMPT_RE.fullmatch(record.get("prompt", "").strip())
                if not m:
                    raise ValueError("not a wing design question")
                goal = _mission(m.groups())
                v = compare({**parse_design(a), **goal}, {**parse_design(b), **goal})
        except ValueError as e:
            return Verdict(False, 0.0, "unparseable", {"error": str(e)})
        if not v.ok:
            return v
        agree = record["label"] == v.evidence["better"]
        return Verdict(agree, v.score, v.reason if agree else "label_disagrees", v.evidence)

    def verify_many(self, objs: list[dict]) -> list[Verdict]:
        """Verdicts for raw designs and records alike, their analyses fanned out over the pool first."""
        designs = []
        for o in objs:
            if "statement" in o:
                m = CLAIM_RE.fullmatch(str(o["statement"]).strip())
                if m:
                    designs.append({**_design(m.groups()[:6]), **_mission(m.groups()[6:])})
            elif "a" in o:
                m = PAIR_PROMPT_RE.fullmatch(str(o.get("prompt", "")).strip())
                for side in (o["a"], o["b"]):
                    if isinstance(side, dict):
                        designs.append(side)
                    elif m and re.fullmatch(DESIGN_RE, str(side).strip()):
                        designs.append({**parse_design(side), **_mission(m.groups())})
            else:
                designs.append(o)
        analyze_many(designs)
        return [self.verify_record(o) if ("a" in o or "statement" in o) else self.verify(o) for o in objs]


def plot_wings(designs: list[dict], path, labels: list[str] | None = None) -> None:
    """Draw the planforms (top view, both halves) of the designs side by side in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from touchstone.files import atomic_file

    fig, ax = plt.subplots(figsize=(8, 4))
    for i, d in enumerate(designs):
        b, cr = d["span"] / 2, d["root_chord"]
        ct = cr * d["taper"]
        x_tip = b * math.tan(math.radians(d["sweep"])) + 0.25 * (cr - ct)
        ys, xs = [-b, 0, b, b, 0, -b, -b], [x_tip, 0, x_tip, x_tip + ct, cr, x_tip + ct, x_tip]
        name = labels[i] if labels else "ABCDEFGH"[i % 8]
        f = analyze(d) if "speed" in d else {}
        if f.get("L_over_D"):
            name += f" (L/D {f['L_over_D']:.1f}, alpha {f['alpha_required']:.1f} deg)"
        elif f:
            name += f" ({f['reason'].replace('_', ' ')})"
        ax.plot(ys, [-x for x in xs], label=name)
    ax.set_aspect("equal")
    ax.set_xlabel("spanwise position (m)")
    ax.set_ylabel("chordwise position (m)")
    ax.legend(loc="lower center", fontsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)

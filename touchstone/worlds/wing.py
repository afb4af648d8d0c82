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
Speed: a stock AeroBuildup run costs ~11 ms, two thirds of it in four NeuralFoil calls of 17 angles
(~2.5 ms a call, nearly all of it per call, not per angle), the rest mostly the ISA atmosphere and the
cross-section frames, which AeroBuildup recomputes dozens of times a run. Here a chunk of designs runs
side by side, one AeroBuildup each in its own thread, and their NeuralFoil calls are answered by one
vectorized call per airfoil (`_Batch`); the mirrored half-wing's calls, identical to the first half's,
are answered from memory, and atmosphere and frames are computed once (`_classes`); ~2 ms a design.
The solver and the angle grid are unchanged: over 200 sampled designs every figure equals a stock
run's (`_analyze(plain=True)`) after rounding, and the raw CL and CD curves differ by at most 2.7e-15
and 4.5e-15 relative (vectorized matrix products round differently). Analyses are cached by design;
`analyze_many`/`verify_many` fan chunks out over a process pool, spawned once (safe beside torch
threads) and reused, one BLAS thread per worker, a record's designs in the same chunk. In-process
batches use the caller's BLAS: on a busy machine a multi-threaded OpenBLAS makes them several times
slower, so set OPENBLAS_NUM_THREADS=1 there (the benchmark does).
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import random
import re
import threading
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

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
CHUNK = 64  # designs per pool task, analysed side by side (see `_Batch`)


def round_design(design: dict) -> dict:
    """Round to the precision the text uses, so the written design is the analysed one."""
    d = dict(design)
    for key, digits in (("span", 1), ("root_chord", 2), ("taper", 2), ("twist", 1), ("max_span", 1)):
        d[key] = round(float(d[key]), digits)
    for key in ("sweep", "speed", "altitude", "weight", "alpha_limit"):
        d[key] = int(round(float(d[key])))
    return d


# ------------------------------------------------------------------------------------------- solver
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
        # Inside `_side_by_side`, NeuralFoil questions go to the shared batch; anywhere else, straight through.
        def get_aero_from_neuralfoil(self, alpha, Re, mach=0.0, model_size="large", control_surfaces=None,
                                     **kwargs):
            batch = getattr(_thread, "batch", None)
            if batch is None or control_surfaces or kwargs:
                return super().get_aero_from_neuralfoil(alpha=alpha, Re=Re, mach=mach, model_size=model_size,
                                                        control_surfaces=control_surfaces, **kwargs)
            return batch.ask(self, alpha, Re, mach, model_size)

    return Air, Wing, Airfoil


@functools.lru_cache(maxsize=64)
def _airfoil(name: str):
    k = _stock(name)
    return _classes()[2](name=k.name, lower_weights=k.lower_weights, upper_weights=k.upper_weights,
                         leading_edge_weight=k.leading_edge_weight, TE_thickness=k.TE_thickness, N1=k.N1, N2=k.N2)


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
                out = asb.KulfanAirfoil.get_aero_from_neuralfoil(questions[0][0], alpha=alpha, Re=Re, mach=mach,
                                                                 model_size=model_size)
                start = 0
                for _, _, alpha, _, _, slot in questions:
                    part = slice(start, start + alpha.size)
                    slot["answer"] = {k: np.reshape(out[k][part], alpha.shape) for k in ("CL", "CD", "CM")}
                    start += alpha.size
            except Exception as e:  # each asker raises it, as its own call would have
                for *_, slot in questions:
                    slot["error"] = e
        self.cond.notify_all()


def _side_by_side(designs: list[dict]) -> list:
    """`_analyze` of each design, or the exception it raised: the runs side by side, NeuralFoil pooled."""
    results: list = [None] * len(designs)
    batch = _Batch(len(designs))

    def run(i: int) -> None:
        _thread.batch, _thread.memo = batch, {}
        try:
            results[i] = _analyze(designs[i])
        except Exception as e:
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


def _analyze(design: dict, plain: bool = False) -> dict:
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
        atmosphere, Wing, af = _air(float(d["altitude"])), _classes()[1], _airfoil(name)
    ct = cr * taper
    x_tip = (b / 2) * math.tan(math.radians(float(d["sweep"]))) + 0.25 * (cr - ct)  # quarter-chord sweep
    wing = Wing(symmetric=True, xsecs=[
        asb.WingXSec(xyz_le=[0, 0, 0], chord=cr, twist=0, airfoil=af),
        asb.WingXSec(xyz_le=[x_tip, b / 2, 0], chord=ct, twist=float(d["twist"]), airfoil=af)])
    area = wing.area()
    airplane = asb.Airplane(wings=[wing], s_ref=area, c_ref=wing.mean_aerodynamic_chord(), b_ref=b)
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


# Analyses by design, least recently used dropped past CACHE_SIZE: a loop that runs for days meets new
# designs every generation, and an unbounded cache grew with all of them. An analysis is about 1.5 KB
# with its key, so the cache stays under about 30 MB; a generation asks for a few thousand at most
# (records, gate set, held-out suite), which stay cached from `_prefetch` to the `analyze` that reads them.
CACHE_SIZE = 20_000
_cache: OrderedDict[str, dict] = OrderedDict()
_pool: ProcessPoolExecutor | None = None


def _remember(key: str, result: dict) -> None:
    _cache[key] = result
    _cache.move_to_end(key)
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)


def _key(design: dict) -> str:
    return repr(sorted({**DEFAULTS, **design}.items()))


def analyze(design: dict) -> dict:
    """The figures a person would quote for one design (CL, CD, L/D, alpha, loading, stall margin...)."""
    key = _key(design)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    result = _side_by_side([design])[0]
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
        _airfoil(name)


def workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _prefetch(groups: list[list[dict]], processes: int | None = None) -> None:
    """Analyse every uncached design into the cache; a group (a record's designs) stays in one chunk.
    Designs whose analysis raises are left out; `analyze` raises for them when asked."""
    processes = processes or workers()
    seen: set[str] = set()
    todo: list[list[tuple[str, dict]]] = []
    for group in groups:
        fresh = [(k, d) for k, d in ((_key(d), d) for d in group) if k not in _cache and k not in seen]
        seen.update(k for k, _ in fresh)
        if fresh:
            todo.append(fresh)
    if not todo:
        return
    n = sum(map(len, todo))
    pooled = n >= POOL_MIN and processes > 1
    # Big enough that NeuralFoil's calls fill up; small enough that a worker slowed by other load on
    # the machine does not hold the last chunk alone.
    size = min(CHUNK, -(-n // (2 * processes))) if pooled else CHUNK
    chunks, chunk = [], []
    for group in todo:
        chunk += group
        if len(chunk) >= size:
            chunks.append(chunk)
            chunk = []
    chunks += [chunk] if chunk else []
    designs = [[d for _, d in chunk] for chunk in chunks]
    results = _pooled(designs, processes) if pooled else map(_side_by_side, designs)
    for chunk, analysed in zip(chunks, results):
        for (key, _), result in zip(chunk, analysed):
            if not isinstance(result, Exception):
                _remember(key, result)


def _pooled(designs: list[list[dict]], processes: int) -> list[list]:
    """`_side_by_side` of each chunk over the process pool. A worker that died (killed, out of memory)
    breaks its pool for good (BrokenProcessPool on every later call), so the pool is rebuilt and the
    chunks asked once more; a second break is raised."""
    global _pool
    for attempt in (1, 2):
        if _pool is None or _pool._max_workers != processes:
            import multiprocessing

            _shutdown_pool(wait=False)
            _pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_worker)
        try:
            return list(_pool.map(_side_by_side, designs))
        except BrokenProcessPool:
            _shutdown_pool(wait=False)
            if attempt == 2:
                raise


@atexit.register  # before the interpreter tears modules down
def _shutdown_pool(wait: bool = True) -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=wait, cancel_futures=True)
        _pool = None


def analyze_many(designs: list[dict], processes: int | None = None) -> list[dict]:
    """`analyze` for many designs, over a process pool of `processes` (default: every core)."""
    _prefetch([[d] for d in designs], processes)
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
    version = 3  # 2: claims balanced between true and false; 3: balanced exactly, by count

    def __init__(self, processes: int | None = None):
        self.processes = processes  # for `render` and `verify_many`; default: every core

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
        return round_design(item)

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
        new = round_design(new)
        return new if new != item else self.mutate(item, rng)

    def verify(self, item: dict) -> Verdict:
        """A single design: is it feasible? score = L/D at the required lift (0 when it cannot fly)."""
        f = analyze(item)
        return Verdict(f["feasible"], f["L_over_D"] or 0.0, f["reason"], f)

    def _record(self, item: dict, other: dict, rng: random.Random, true_minus_false: int = 0) -> dict | None:
        if rng.random() < 0.6:
            label = rng.choice("ab")
            a, b = (item, other) if label == "a" else (other, item)
            v = compare(a, b)
            if not v.ok:
                return None
            rec = pair_record(f"A wing must {mission(item)}. Which design is better?", describe(a), describe(b),
                              v.evidence["better"], world=self.name, kind="better_design", source="aerobuildup")
        else:
            # Half the claims true, half false. About 60% of sampled designs are feasible, and on such a
            # set a judge that always answers "true" looks skilled: generation 0 scored 0.555 on the
            # suite that way, and every fine-tuned challenger lost ~0.1 there by unlearning the bias.
            # A coin for each claim is not enough: a false claim needs an infeasible design and is
            # dropped more often, so the label behind is asked for (`true_minus_false`, kept by render).
            want = rng.random() < 0.5 if true_minus_false == 0 else true_minus_false < 0
            options = [d for d in (item, other) if analyze(d)["feasible"] == want]
            if not options:
                return None
            shown = rng.choice(options)
            rec = claim_record(f"A wing with {describe(shown)} can {mission(shown)} and a stall margin of at least "
                               f"20%.", analyze(shown)["feasible"], world=self.name, kind="feasible",
                               source="aerobuildup")
        rec["verdict"] = self.verify_record(rec).to_dict()
        return rec if rec["verdict"]["ok"] else None

    def texts(self, rng: random.Random, n: int) -> list[str]:
        """`render`'s questions and designs for n items, without the simulator (which decides only labels)."""
        out = []
        for _ in range(n):
            item = self.sample(rng)
            other = self.mutate(item, rng)
            out += [f"A wing must {mission(item)}. Which design is better?", describe(item), describe(other),
                    f"A wing with {describe(other)} can {mission(other)} and a stall margin of at least 20%."]
        return out

    def render(self, rng: random.Random, n: int) -> list[dict]:
        out: list[dict] = []
        true_minus_false = 0
        while len(out) < n:
            # Sample a batch, analyse it in parallel, then write the records (ties are dropped).
            batch = []
            while len(batch) < max(8, int(1.5 * (n - len(out)))):
                item = self.sample(rng)
                if in_split(self, item):
                    batch.append((item, self.mutate(item, rng)))
            _prefetch([list(pair) for pair in batch], self.processes)
            for item, other in batch:
                rec = self._record(item, other, rng, true_minus_false)
                if rec is not None and len(out) < n:
                    out.append(rec)
                    if "statement" in rec:
                        true_minus_false += 1 if rec["label"] else -1
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
        """Verdicts for raw designs and records alike, their analyses fanned out over the pool first
        (a record's designs in the same chunk)."""
        _prefetch([_designs_of(o) for o in objs], self.processes)
        return [self.verify_record(o) if ("a" in o or "statement" in o) else self.verify(o) for o in objs]


def _designs_of(obj: dict) -> list[dict]:
    """The designs `verify_record` (or `verify`) will analyse for a record (or raw design); none when
    its text does not parse."""
    if "statement" in obj:
        m = CLAIM_RE.fullmatch(str(obj["statement"]).strip())
        return [{**_design(m.groups()[:6]), **_mission(m.groups()[6:])}] if m else []
    if "a" in obj:
        m = PAIR_PROMPT_RE.fullmatch(str(obj.get("prompt", "")).strip())
        return [side if isinstance(side, dict) else {**parse_design(side), **_mission(m.groups())}
                for side in (obj["a"], obj["b"])
                if isinstance(side, dict) or (m and re.fullmatch(DESIGN_RE, str(side).strip()))]
    return [obj]


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

"""The wing world: designs and missions written as text and read back, and the records about them.
See `touchstone.worlds.wing` for what a design is and when it is feasible.
"""

from __future__ import annotations

import math
import random
import re

from touchstone.files import atomic_file
from touchstone.records import claim_record, is_judged, is_pair, pair_record
from touchstone.worlds.base import Verdict, World, agreement, ordered, verified_evidence
from touchstone.worlds.wing.aero import AIRFOILS
from touchstone.worlds.wing.solver import analyze, compare, prefetch


def round_design(design: dict) -> dict:
    """Round to the precision the text uses, so the written design is the analysed one."""
    d = dict(design)
    for key, digits in (("span", 1), ("root_chord", 2), ("taper", 2), ("twist", 1), ("max_span", 1)):
        d[key] = round(float(d[key]), digits)
    for key in ("sweep", "speed", "altitude", "weight", "alpha_limit"):
        d[key] = round(float(d[key]))
    return d


def describe(d: dict) -> str:
    return (
        f"span {d['span']:.1f} m, root chord {d['root_chord']:.2f} m, taper {d['taper']:.2f}, "
        f"sweep {d['sweep']} deg, twist {d['twist']:.1f} deg, airfoil NACA {d['airfoil'][4:]}"
    )


def mission(d: dict) -> str:
    return (
        f"carry {d['weight']} N at {d['speed']} m/s at {d['altitude']} m altitude, with angle of attack "
        f"at most {d['alpha_limit']} deg and span at most {d['max_span']:.1f} m"
    )


NUM = r"(-?\d+(?:\.\d+)?)"
DESIGN_RE = (
    rf"span {NUM} m, root chord {NUM} m, taper {NUM}, sweep {NUM} deg, twist {NUM} deg, "
    r"airfoil NACA (\d{4})"
)
MISSION_RE = (
    rf"carry {NUM} N at {NUM} m/s at {NUM} m altitude, with angle of attack at most {NUM} deg and span at most {NUM} m"
)
PAIR_PROMPT_RE = re.compile(rf"A wing must {MISSION_RE}\. Which design is better\?")
CLAIM_RE = re.compile(rf"A wing with {DESIGN_RE} can {MISSION_RE} and a stall margin of at least 20%\.")


def _design(values) -> dict:
    span, chord, taper, sweep, twist, digits = values
    return {
        "span": float(span),
        "root_chord": float(chord),
        "taper": float(taper),
        "sweep": int(float(sweep)),
        "twist": float(twist),
        "airfoil": f"naca{digits}",
    }


def _mission(values) -> dict:
    weight, speed, altitude, alpha_limit, max_span = values
    return {
        "weight": int(float(weight)),
        "speed": int(float(speed)),
        "altitude": int(float(altitude)),
        "alpha_limit": int(float(alpha_limit)),
        "max_span": float(max_span),
    }


def parse_design(text: str) -> dict:
    m = re.fullmatch(DESIGN_RE, text.strip())
    if not m:
        raise ValueError(f"not a wing design: {text[:80]!r}")
    return _design(m.groups())


# -------------------------------------------------------------------------------------------- world
class WingWorld(World):
    name = "wing"
    version = 3  # 2: claims balanced between true and false; 3: balanced exactly, by count
    suite_size = 400  # smaller than the others': each design runs the solver twice

    def __init__(self, processes: int | None = None):
        self.processes = processes  # for `render` and `verify_many`; default: every core

    def sample(self, rng: random.Random) -> dict:
        speed = rng.randint(20, 80)
        altitude = rng.choice([0, 500, 1000, 2000, 3000, 5000])
        weight = rng.randrange(500, 20000, 10)
        rho = 1.225 * math.exp(-altitude / 8500)  # only to size the wing near a sensible lift coefficient
        area = weight / (0.5 * rho * speed**2 * rng.uniform(0.2, 1.3))
        aspect = rng.uniform(5, 14)
        span = math.sqrt(aspect * area)
        taper = rng.uniform(0.3, 1.0)
        item = {
            "span": span,
            "root_chord": 2 * area / (span * (1 + taper)),
            "taper": taper,
            "sweep": rng.choice([0, 0, 5, 10, 20, 30]),
            "twist": rng.uniform(-5, 1),
            "airfoil": rng.choice(AIRFOILS),
            "speed": speed,
            "altitude": altitude,
            "weight": weight,
            "alpha_limit": rng.choice([8, 10, 12]),
            "max_span": span * rng.uniform(0.9, 1.5),
        }
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
            a, b = ordered(rng.choice("ab"), item, other)
            v = compare(a, b)
            if not v.ok:
                return None
            rec = pair_record(
                f"A wing must {mission(item)}. Which design is better?",
                describe(a),
                describe(b),
                v.evidence["better"],
                world=self.name,
                kind="better_design",
                source="aerobuildup",
            )
        else:
            # Half the claims true, half false. Most sampled designs are feasible, and on such a set a
            # judge that always answers "true" looks skilled, and a fine-tuned one that unlearns the
            # bias looks worse. A coin for each claim is not enough: a false claim needs an infeasible design and is
            # dropped more often, so the label behind is asked for (`true_minus_false`, kept by render).
            want = rng.random() < 0.5 if true_minus_false == 0 else true_minus_false < 0
            options = [d for d in (item, other) if analyze(d)["feasible"] == want]
            if not options:
                return None
            shown = rng.choice(options)
            rec = claim_record(
                f"A wing with {describe(shown)} can {mission(shown)} and a stall margin of at least 20%.",
                analyze(shown)["feasible"],
                world=self.name,
                kind="feasible",
                source="aerobuildup",
            )
        rec["verdict"] = self.verify_record(rec).to_dict()
        return rec if rec["verdict"]["ok"] else None

    def texts(self, rng: random.Random, n: int) -> list[str]:
        """`render`'s questions and designs for n items, without the simulator (which decides only labels)."""
        out = []
        for _ in range(n):
            item = self.sample(rng)
            other = self.mutate(item, rng)
            out += [
                f"A wing must {mission(item)}. Which design is better?",
                describe(item),
                describe(other),
                f"A wing with {describe(other)} can {mission(other)} and a stall margin of at least 20%.",
            ]
        return out

    def render(self, rng: random.Random, n: int) -> list[dict]:
        """`World.render` over batches: the designs of a batch are analysed in parallel first, and the
        claims are kept balanced between true and false (`_record`)."""
        out: list[dict] = []
        true_minus_false = 0
        while len(out) < n:
            # Sample a batch, analyse it in parallel, then write the records (ties are dropped).
            batch = []
            while len(batch) < max(8, int(1.5 * (n - len(out)))):
                item = self.sample(rng)
                if self.in_split(item):
                    batch.append((item, self.mutate(item, rng)))
            prefetch([list(pair) for pair in batch], self.processes)
            for item, other in batch:
                rec = self._record(item, other, rng, true_minus_false)
                if rec is not None and len(out) < n:
                    out.append(rec)
                    if not is_pair(rec):
                        true_minus_false += 1 if rec["label"] else -1
        return out

    def verify_record(self, record: dict) -> Verdict:
        """Parse the designs and mission from the record's text, re-run the solver, compare the label.
        Pair records whose a/b are design dicts (not text) are accepted too."""
        try:
            if not is_pair(record):
                m = CLAIM_RE.fullmatch(record["statement"].strip())
                if not m:
                    raise ValueError("not a wing feasibility statement")
                v = self.verify({**_design(m.groups()[:6]), **_mission(m.groups()[6:])})
                return agreement(v.ok == bool(record["label"]), v.evidence, v.score)
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
        return agreement(record["label"] == v.evidence["better"], v.evidence, v.score, v.reason)

    def derivation(self, record: dict) -> str | None:
        """The simulator's figures behind the answer: each design's aspect ratio, the lift coefficient
        it needs and at what angle, its L/D, and what rules it out. From the verdict the record was
        verified with, or the simulator run again on the record's text."""
        evidence = verified_evidence(record)
        if evidence is None:
            v = self.verify_record(record)
            evidence = v.evidence if v.ok else None
        try:
            if is_pair(record):
                return f" The first: {figures_text(evidence['a'])}. The second: {figures_text(evidence['b'])}."
            return f" {figures_text(evidence)}."
        except (KeyError, TypeError):
            return None

    def verify_many(self, objs: list[dict]) -> list[Verdict]:
        """Verdicts for raw designs and records alike, their analyses fanned out over the pool first
        (a record's designs in the same chunk)."""
        prefetch([designs_of(o) for o in objs], self.processes)
        return super().verify_many(objs)


def figures_text(f: dict) -> str:
    """A design's analysis (`analyze`) in words, ending in whether it flies the mission."""
    head = f"aspect ratio {f['aspect_ratio']:.1f}, needs CL {f['CL_required']:.2f} of at most {f['CL_max']:.2f}"
    if f["alpha_required"] is None:
        return head + (", cannot lift it" if f["reason"] == "cannot_lift" else ", too much wing")
    tail = {
        "span_limit": "span over the limit",
        "alpha_limit": "angle over the limit",
        "stall_margin": "stall margin too small",
        "feasible": "feasible",
    }[f["reason"]]
    return f"{head}, at {f['alpha_required']:.1f} deg, L/D {f['L_over_D']:.1f}, {tail}"


def designs_of(obj: dict) -> list[dict]:
    """The designs `verify_record` (or `verify`) will analyse for a record (or raw design); none when
    its text does not parse."""
    if not is_judged(obj):
        return [obj]
    if not is_pair(obj):
        m = CLAIM_RE.fullmatch(str(obj["statement"]).strip())
        return [{**_design(m.groups()[:6]), **_mission(m.groups()[6:])}] if m else []
    m = PAIR_PROMPT_RE.fullmatch(str(obj.get("prompt", "")).strip())
    return [
        side if isinstance(side, dict) else {**parse_design(side), **_mission(m.groups())}
        for side in (obj["a"], obj["b"])
        if isinstance(side, dict) or (m and re.fullmatch(DESIGN_RE, str(side).strip()))
    ]


def plot_wings(designs: list[dict], path, labels: list[str] | None = None) -> None:
    """Draw the planforms (top view, both halves) of the designs side by side in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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

"""Debate: the model picks the better of two wing designs, then argues the choice with the simulator's figures.

    touchstone debate models/gen-0003 a.json b.json --plot wings.png

A design file is one JSON object in the wing world's format (touchstone.worlds.wing): the wing (span,
root_chord, taper, sweep, twist, airfoil) and the mission (speed, altitude, weight, alpha_limit,
max_span); a mission key missing from B is taken from A, and the two missions must agree.

The output is plain text: the model's choice and its confidence (the judge on the rendered question,
both orders), each design's figures (L/D, CL, CD, required angle of attack, wing loading, stall margin),
the case for the choice, the strongest point for the other design and why it loses, and, when the
simulator's verdict differs from the model's choice, a sentence saying so. The argument is built from
the simulator's figures by fixed rules (feasibility first, then L/D); the model only chooses.
"""

from __future__ import annotations

from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import check_output, json_object, read_text
from touchstone.judge import Judge
from touchstone.worlds.wing import (
    AIRFOILS,
    DEFAULTS,
    DESIGN_KEYS,
    MISSION_KEYS,
    analyze,
    compare,
    describe,
    mission,
    plot_wings,
    round_design,
)

REASONS = {
    "cannot_lift": "cannot make the lift at all (it needs CL {CL_required:.2f}, its maximum is {CL_max:.2f})",
    "too_much_wing": "has so much wing that it would need less lift than it makes at its lowest angle",
    "span_limit": "spans {span:.1f} m, over the {max_span:.1f} m limit",
    "alpha_limit": "needs {alpha_required:.1f} deg of angle of attack, over the {alpha_limit} deg limit",
    "stall_margin": "flies with only {stall_pct:.0f}% stall margin, under the 20% minimum",
}


def read_design(path_or_json: str) -> dict:
    """A design from a JSON file (or an inline JSON object); a bad file is a one-line UserError."""

    inline = path_or_json.lstrip().startswith("{")
    text = path_or_json if inline else read_text(path_or_json, "JSON wing design")
    return json_object(text, path_or_json, what="a JSON object with a wing design")


# What the simulator can analyse: a wing that exists, flying a mission in the atmosphere's range.
LIMITS = {
    "span": (0, 1000),
    "root_chord": (0, 100),
    "taper": (0, 1),
    "sweep": (-75, 75),
    "twist": (-30, 30),
    "speed": (0, 400),
    "altitude": (-500, 20000),
    "weight": (0, 1e8),
    "alpha_limit": (0, 30),
    "max_span": (0, 1e9),
}


def check_design(design: dict, where: str) -> dict:
    """The design's keys are known, its numbers numbers within `LIMITS` and its airfoil one the
    simulator knows; otherwise a UserError naming the file and key."""

    for key, value in design.items():
        if key not in DESIGN_KEYS + MISSION_KEYS:
            raise UserError(f"{where}: unknown key '{key}' (known: {', '.join(DESIGN_KEYS + MISSION_KEYS)})")
        if key == "airfoil":
            if not isinstance(value, str) or value.lower().replace(" ", "") not in AIRFOILS:
                raise UserError(f"{where}: key 'airfoil' must be one of {', '.join(AIRFOILS)}, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise UserError(f"{where}: key '{key}' must be a number, got {value!r}")
        low, high = LIMITS[key]
        open_low = key in ("span", "root_chord", "taper", "speed", "weight", "max_span")
        if not (low < value <= high if open_low else low <= value <= high):
            raise UserError(
                f"{where}: key '{key}' must be in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}"
            )
    return design


def check_designs(a: dict, b: dict, a_name: str = "design A", b_name: str = "design B") -> tuple[dict, dict]:
    """Two designs ready to compare: each checked key by key (`check_design`), B takes A's mission keys it
    lacks, defaults filled in, rounded as the text writes them. A missing key or a different mission is
    a UserError naming the design."""

    a, b = dict(check_design(a, a_name)), dict(check_design(b, b_name))
    for key in MISSION_KEYS:
        if key in a and key not in b:
            b[key] = a[key]
        if key in a and key in b and float(a[key]) != float(b[key]):
            raise UserError(f"{b_name}: key '{key}' differs from {a_name}: both designs must fly the same mission")
    for name, d in ((a_name, a), (b_name, b)):
        for key in DESIGN_KEYS + ("speed", "altitude", "weight"):
            if key not in d:
                raise UserError(f"{name}: missing key '{key}'")
    return round_design({**DEFAULTS, **a}), round_design({**DEFAULTS, **b})


def question(a: dict, b: dict) -> dict:
    """The pair question the judge is asked about two checked designs: {"prompt", "a", "b"}."""

    return {"prompt": f"A wing must {mission(a)}. Which design is better?", "a": describe(a), "b": describe(b)}


def _figures(name: str, d: dict, f: dict) -> str:
    if f["L_over_D"] is None:
        return (
            f"{name}: cannot fly the mission ({f['reason'].replace('_', ' ')}); needs CL {f['CL_required']:.3f}, "
            f"CL max {f['CL_max']:.3f}, wing loading {f['wing_loading']:.0f} N/m^2."
        )
    return (
        f"{name}: L/D {f['L_over_D']:.1f}, CL {f['CL']:.3f}, CD {f['CD']:.4f}, required angle of attack "
        f"{f['alpha_required']:.1f} deg (limit {d['alpha_limit']}), wing loading {f['wing_loading']:.0f} N/m^2, "
        f"stall margin {100 * f['stall_margin']:.0f}%, {'feasible' if f['feasible'] else 'NOT feasible'}."
    )


def _why_not(d: dict, f: dict) -> str:
    return REASONS.get(f["reason"], f["reason"].replace("_", " ")).format(**d, **f, stall_pct=100 * f["stall_margin"])


def _advantages(x: dict, fx: dict, fy: dict) -> list[tuple[float, str]]:
    """(relative size, sentence) for each figure where design x beats design y."""
    out = []
    if fx["L_over_D"] and fy["L_over_D"] and fx["L_over_D"] > fy["L_over_D"]:
        gain = fx["L_over_D"] / fy["L_over_D"] - 1
        out.append(
            (
                gain,
                f"a higher L/D ({fx['L_over_D']:.1f} against {fy['L_over_D']:.1f}), so it needs about "
                f"{100 * (1 - fy['L_over_D'] / fx['L_over_D']):.0f}% less thrust to cruise (drag = weight / (L/D))",
            )
        )
    if fx["stall_margin"] > fy["stall_margin"]:
        out.append(
            (
                (fx["stall_margin"] - fy["stall_margin"]) / max(0.05, abs(fy["stall_margin"])),
                f"more stall margin ({100 * fx['stall_margin']:.0f}% against {100 * fy['stall_margin']:.0f}%)",
            )
        )
    if (
        fx["alpha_required"] is not None
        and fy["alpha_required"] is not None
        and fx["alpha_required"] < fy["alpha_required"]
    ):
        out.append(
            (
                (fy["alpha_required"] - fx["alpha_required"]) / max(1.0, abs(fy["alpha_required"])),
                f"a lower required angle of attack ({fx['alpha_required']:.1f} deg against {fy['alpha_required']:.1f})",
            )
        )
    if fx["wing_loading"] < fy["wing_loading"]:
        out.append(
            (
                fy["wing_loading"] / fx["wing_loading"] - 1,
                f"a lower wing loading ({fx['wing_loading']:.0f} against {fy['wing_loading']:.0f} N/m^2)",
            )
        )
    # L/D decides between two feasible wings, so it leads whenever a design has it.
    return sorted(out, key=lambda t: (t[1].startswith("a higher L/D"), t[0]), reverse=True)


def _verdict_reason(reason: str) -> str:
    """The simulator's reason in words, with designs named A/B: "a_higher_L_over_D" -> "A has the higher L/D"."""
    side, _, rest = reason.partition("_")
    if rest == "higher_L_over_D":
        return f"{side.upper()} has the higher L/D"
    if rest == "only_feasible":
        return f"only {side.upper()} can fly the mission"
    return reason.replace("_", " ")


def argue(choice: str, confidence: float, a: dict, b: dict) -> str:
    """The debate text for the model's `choice` ("a"/"b") from the two designs' simulator figures."""

    fa, fb = analyze(a), analyze(b)
    verdict = compare(a, b)
    names = {"a": "A", "b": "B"}
    other = "b" if choice == "a" else "a"
    d = {"a": a, "b": b}
    f = {"a": fa, "b": fb}
    x, y = names[choice], names[other]
    lines = [
        f"The model chooses design {x} (confidence {100 * confidence:.0f}%).",
        "",
        _figures("A", a, fa),
        _figures("B", b, fb),
        "",
    ]
    fx, fy = f[choice], f[other]
    if fx["feasible"] and not fy["feasible"]:
        case = f"Only {x} can do the job: {y} {_why_not(d[other], fy)}."
    elif not fx["feasible"]:
        case = f"{x} cannot fly this mission as given: it {_why_not(d[choice], fx)}."
    elif fx["L_over_D"] > fy["L_over_D"]:
        case = f"Both designs fly the mission; {x} is the more efficient wing."
    else:
        case = f"Both designs fly the mission, and {y} is the more efficient one."
    ours = _advantages(d[choice], fx, fy)
    if ours:
        case += f" {x} has " + "; ".join(s for _, s in ours[:2]) + "."
    lines.append("The case for " + x + ": " + case)
    theirs = _advantages(d[other], fy, fx)
    if not fy["feasible"] and fx["feasible"]:
        lose = (
            f"but {y} {_why_not(d[other], fy)}, and a wing that cannot fly the mission loses whatever its other figures"
        )
    elif verdict.ok and verdict.evidence["better"] == choice:
        lose = f"but the mission is decided by feasibility first and then by L/D, where {x} is ahead"
    elif verdict.ok:
        lose = "and that point is the deciding one"
    else:
        lose = "and the simulator calls the two designs too close to separate"
    if theirs:
        lines.append(f"The strongest point for {y}: {theirs[0][1]}; {lose}.")
    else:
        lines.append(f"{y} beats {x} on none of these figures.")
    if not verdict.ok:
        lines.append(f"The simulator finds no clear winner ({verdict.reason.replace('_', ' ')}).")
    elif verdict.evidence["better"] != choice:
        lines.append(
            f"The simulator disagrees with the model: it rates design {y} better ({_verdict_reason(verdict.reason)})."
        )
    else:
        lines.append(f"The simulator agrees: design {x} is better ({_verdict_reason(verdict.reason)}).")
    return "\n".join(lines)


def debate(
    model_dir: str | Path, a_json: str, b_json: str, plot: str | Path | None = None, overwrite: bool = False
) -> str:
    """The model's choice between two wing designs, argued with the simulator's figures (see module docstring)."""
    a, b = check_designs(read_design(a_json), read_design(b_json), a_json, b_json)
    if plot is not None:
        check_output(plot, overwrite=overwrite)
    judge = Judge.load(model_dir)
    r = judge.pairs([question(a, b)])[0]
    text = argue(r["choice"], r["p_" + r["choice"]], a, b)
    if plot is not None:
        plot_wings([a, b], plot, labels=["A", "B"])
        text += f"\n\nDrawing of both wings: {plot}"
    return text

"""Step 6, gate: does a challenger beat the champion by more than chance? Promotion moves models/CHAMPION.

Both models judge the same gate records, so the outcomes are paired: per record, each model is right
or wrong. The test is McNemar's exact test, one-sided: only the discordant records carry evidence
(b = challenger right and champion wrong, c = the reverse), and under "no difference" b follows
Binomial(b + c, 1/2). We promote when P(B >= b) < `alpha` (0.05). Exact rather than the chi-square
approximation because a generation's gate set is a few hundred records and b + c can be small;
one-sided because the only decision is "promote or not"; paired because both models see the same
items, which removes the item-difficulty variance an unpaired two-proportion test would carry.

The regression guard: on every held-out suite (never trained on, never used to gate) the challenger
may not fall more than `tolerance` (0.05 accuracy) below the champion where that drop is also
significant by the same paired test in the other direction (champion better, p < `alpha`). Both
conditions, because either alone misfires: near chance, two judges disagree on about half of a
600-record suite, so its accuracy difference has a standard deviation of about 3 points (3.5 for the
400 wing records), and a bare 5-point rule would block about a quarter of all promotions across six
suites by noise alone; a bare test
would block a real but immaterial one-point loss on a large suite. The significance is Holm's step-down
over all suites together (family-wise error `alpha`): six separate tests at 0.05 would flag at least
one suite by chance in about a quarter of all generations, and each flag blocks a promotion and breaks
a training lineage.

The divergence guard: a challenger whose training loss ended non-finite or above `DIVERGED` times where
it began is not promoted, whatever the gate says. Why: near chance, a model destroyed by its recipe
(lr a thousand times too high: loss 5.9 -> 217) answers every question alike, and against a champion
that sits a few points below chance on its gate such a model passed McNemar's test (0.530 against
0.474, p = 0.034). The factor is far from what learning does: the promoted challengers measured ended
within a few percent of their first step's loss (3.00 -> 3.08 for one trained on from another).

Not guaranteed: the error rate over many generations. Each gate is a separate test at `alpha`; over a
long run some promotions will be chance wins (the regression guard and the next gates limit the harm).
"""

from __future__ import annotations

import math

from touchstone.files import read_manifest, write_json_atomic
from touchstone.loop.config import LoopConfig
from touchstone.loop.generation import Generation
from touchstone.loop.suites import judge_correct, suite_scores
from touchstone.loop.workspace import Workspace, data_counts, records

ALPHA = 0.05
TOLERANCE = 0.05
DIVERGED = 2.0  # the divergence guard's factor on the first step's training loss


def diverged(model_dir) -> str | None:
    """Why the fine-tuning of `model_dir` diverged (its MANIFEST.json's first and last loss), or None."""
    stats = read_manifest(model_dir)
    first, last = stats.get("loss_first"), stats.get("loss_last")
    if not isinstance(first, int | float) or not isinstance(last, int | float):
        return None
    if not math.isfinite(last) or last > DIVERGED * first:
        return f"diverged: training loss {first:.3g} -> {last:.3g} (above {DIVERGED:g}x where it began); not promoted"
    return None


def mcnemar(champion: list[bool], challenger: list[bool]) -> dict:
    """One-sided exact McNemar test that the challenger is right more often than the champion."""
    from scipy.stats import binomtest  # scipy: only when a test is computed, not for `touchstone status`

    if len(champion) != len(challenger):
        raise ValueError("the two models were judged on different numbers of records")
    b = sum(1 for x, y in zip(champion, challenger) if y and not x)
    c = sum(1 for x, y in zip(champion, challenger) if x and not y)
    p = binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    n = len(champion)
    return {
        "test": "mcnemar_exact_one_sided",
        "n": n,
        "challenger_only": b,
        "champion_only": c,
        "champion_accuracy": sum(champion) / n if n else None,
        "challenger_accuracy": sum(challenger) / n if n else None,
        "p_value": p,
    }


def paired_difference(before: list[bool], after: list[bool], z: float = 1.96) -> dict:
    """Accuracy difference after - before on the same items, with a normal-approximation 95% interval
    of the paired difference (its variance uses the per-item differences, so shared difficulty cancels)."""
    n = len(before)
    if n == 0 or n != len(after):
        raise ValueError("need the same non-empty set of items for both models")
    d = [int(a) - int(b) for a, b in zip(after, before)]
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(1, n - 1)
    half = z * math.sqrt(var / n)
    return {
        "n": n,
        "before": sum(before) / n,
        "after": sum(after) / n,
        "difference": mean,
        "ci95": [mean - half, mean + half],
    }


def suite_drop(champion: list[bool], challenger: list[bool]) -> dict:
    """How far the challenger fell below the champion on one suite, and the paired one-sided p-value
    that the champion is right more often."""
    reverse = mcnemar(challenger, champion)
    return {"drop": reverse["challenger_accuracy"] - reverse["champion_accuracy"], "p_value": reverse["p_value"]}


def holm(p_values: dict[str, float], alpha: float = ALPHA) -> set[str]:
    """The names whose null hypothesis Holm's step-down procedure rejects at family-wise level `alpha`."""
    rejected = set()
    ordered = sorted(p_values, key=p_values.get)
    for i, name in enumerate(ordered):
        if p_values[name] >= alpha / (len(ordered) - i):
            break
        rejected.add(name)
    return rejected


def regressed_suites(
    suites_champion: dict[str, list[bool]],
    suites_challenger: dict[str, list[bool]],
    alpha: float = ALPHA,
    tolerance: float = TOLERANCE,
) -> dict[str, dict]:
    """The suites on which the challenger regressed: a drop above `tolerance` that is significant after
    Holm's correction over all the suites (see the module docstring), with their checks."""
    checks = {name: suite_drop(suites_champion[name], suites_challenger[name]) for name in suites_champion}
    significant = holm({name: c["p_value"] for name, c in checks.items()}, alpha)
    return {name: c for name, c in checks.items() if c["drop"] > tolerance and name in significant}


def decide(
    gate: dict,
    suites_champion: dict[str, list[bool]],
    suites_challenger: dict[str, list[bool]],
    alpha: float = ALPHA,
    tolerance: float = TOLERANCE,
) -> tuple[bool, str]:
    """(promote?, reason in one line) from the gate test and both models' per-record suite results."""
    drops = regressed_suites(suites_champion, suites_challenger, alpha, tolerance)
    if gate["p_value"] >= alpha:
        return False, (
            f"not significant: challenger {gate['challenger_accuracy']:.3f} vs champion "
            f"{gate['champion_accuracy']:.3f} on {gate['n']} gate records, McNemar p = "
            f"{gate['p_value']:.3g} >= {alpha}"
        )
    if drops:
        worst = max(drops, key=lambda name: drops[name]["drop"])
        return False, (
            f"regression: suite {worst} dropped {drops[worst]['drop']:.3f} (> {tolerance}, paired p = "
            f"{drops[worst]['p_value']:.3g}) although the gate passed (p = {gate['p_value']:.3g})"
        )
    return True, (
        f"promoted: challenger {gate['challenger_accuracy']:.3f} vs champion {gate['champion_accuracy']:.3f} "
        f"on {gate['n']} gate records, McNemar p = {gate['p_value']:.3g} < {alpha}; no suite dropped "
        f"significantly by more than {tolerance}"
    )


def gate(ws: Workspace, cfg: LoopConfig, g: Generation) -> dict:
    """Champion and challenger on the gate set and every held-out suite; the decision, in
    generations/gen-NNNN/gate.json and the ledger (with both models' metrics and the data counts)."""
    gate_set = records(g.dir / "gate.jsonl")
    champion_dir, challenger_dir = ws.models / g.champion, ws.model(g.number)
    champ = judge_correct(champion_dir, gate_set)
    chall = judge_correct(challenger_dir, gate_set)
    test = mcnemar(champ, chall)
    per_world = {}
    for w in cfg.worlds:
        idx = [i for i, r in enumerate(gate_set) if r["world"] == w]
        if idx:
            per_world[w] = {
                "n": len(idx),
                "champion": sum(champ[i] for i in idx) / len(idx),
                "challenger": sum(chall[i] for i in idx) / len(idx),
            }
    s_champ = suite_scores(champion_dir, g.worlds)
    s_chall = suite_scores(challenger_dir, g.worlds)
    correct = {w: [bool(c) for c in s["correct"]] for w, s in s_champ.items()}
    correct_chall = {w: [bool(c) for c in s["correct"]] for w, s in s_chall.items()}
    promote, reason = decide(test, correct, correct_chall, cfg.alpha, cfg.tolerance)
    divergence = diverged(challenger_dir)
    if divergence:
        promote, reason = False, divergence
    # A rejected challenger that is no worse than the champion stays the next challenger's base (see
    # workspace.training_base); one that lost significantly, on the gate or any suite, or diverged, is dropped.
    worse = (
        divergence is not None
        or mcnemar(chall, champ)["p_value"] < cfg.alpha
        or bool(regressed_suites(correct, correct_chall, cfg.alpha, cfg.tolerance))
    )
    stats = {
        "gate": test,
        "gate_per_world": per_world,
        "base": g.base,
        "continue": not promote and not worse,
        "suites_champion": {w: s["accuracy"] for w, s in s_champ.items()},
        "suites_challenger": {w: s["accuracy"] for w, s in s_chall.items()},
        "alpha": cfg.alpha,
        "tolerance": cfg.tolerance,
    }
    write_json_atomic(g.dir / "gate.json", {"promote": promote, "reason": reason, **stats})
    if promote:
        ws.set_champion(g.challenger)
    ledger = g.ledger
    with ledger.transaction():
        ledger.set_metrics(g.number, g.champion, {"gate": {"accuracy": test["champion_accuracy"], "n": test["n"]}})
        ledger.set_metrics(
            g.number,
            g.challenger,
            {
                "gate": {"accuracy": test["challenger_accuracy"], "n": test["n"]},
                **{f"suite:{w}": s for w, s in s_chall.items()},
            },
        )
        ledger.set_metrics(g.number, g.champion, {f"suite:{w}": s for w, s in s_champ.items()})
        ledger.set_counts(g.number, data_counts(ws))
        ledger.decide(g.number, g.challenger, "promoted" if promote else "rejected", reason, test["p_value"], stats)
    return {"promote": promote, "reason": reason, "p_value": test["p_value"]}

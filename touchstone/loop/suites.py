"""How the loop scores a model: which records it judges right, and its held-out suite scores.

The one place the loop compares a judge's verdict with a label (the gate set, the held-out suites, the
rework's disagreements). `evaluate.judge_records` compares them the same way but reports counts, and
the gate's paired tests (McNemar, the regression guard) need each record's outcome, so the loop keeps
the per-record comparison here."""

from __future__ import annotations

from pathlib import Path

from touchstone.files import read_json, write_json_atomic
from touchstone.judge import Judge
from touchstone.synth import heldout_suite


def judged_right(judge: Judge, records: list[dict]) -> list[bool]:
    """Per record: whether `judge` chooses what its label says."""
    verdicts = judge.records(records)
    return [str(v["choice"]).lower() == str(r["label"]).lower() for r, v in zip(records, verdicts)]


def judge_correct(model_dir: Path, records: list[dict]) -> list[bool]:
    """Per record: whether the model in `model_dir` judges it as its label says."""
    return judged_right(Judge.load(model_dir), records)


def suite_scores(model_dir: Path, worlds: dict) -> dict[str, dict]:
    """Per world: the judge's accuracy on the held-out suite and the per-record correctness, cached in
    the model directory's eval.json (the model never changes, the suites are versioned)."""
    cache = model_dir / "eval.json"
    have = read_json(cache).get("suites", {}) if cache.exists() else {}
    suites = {name: heldout_suite(world) for name, world in worlds.items()}
    todo = [
        w
        for w in worlds
        if w not in have or have[w].get("version") != suites[w][0] or have[w].get("n") != len(suites[w][1])
    ]  # a suite of another size is another suite
    if todo:
        judge = Judge.load(model_dir)
        for w in todo:
            correct = judged_right(judge, suites[w][1])
            have[w] = {
                "version": suites[w][0],
                "n": len(correct),
                "accuracy": sum(correct) / len(correct),
                "correct": [int(c) for c in correct],
            }
        write_json_atomic(cache, {"suites": have})
    return {w: have[w] for w in worlds}

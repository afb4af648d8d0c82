"""Learning curves: fine-tune from a base model and score the held-out suites every N steps.

    touchstone synth numbers --n 4000 --out runs/synth/numbers.jsonl
    touchstone study runs/base --data runs/synth/numbers.jsonl --every 100 --epochs 2 --out runs/study/numbers

The training is `touchstone.train.finetune.finetune` with the same settings (`FinetuneConfig`); at step 0 and
every `every` steps (and after the last) its callback judges the held-out suites of the worlds named (default:
the worlds of the training records; `facts-untaught` may be named too) as `touchstone eval` does
(`touchstone.evaluate.judge_records`), so a curve point is exactly an eval of the model at that step. Each
point records the steps, the training's own wall and CPU seconds so far (evaluation excluded), and per world
the accuracy, the pairs' and the claims' accuracy apart, and the accuracy per record kind; with `--contrast
K`, also the claims' accuracy when judged through the pair skill (`claims_contrast`, "cNN" in the table).

Written to OUT: `curve.json` (atomically, after every point, so a long study can be read while it runs),
`curve.png` (accuracy against steps, one panel per world, pairs and claims apart), and `model/`, the
fine-tuned model of the last step. The table is printed as well.

A curve that still climbs at the end says "train longer"; one flat at chance says the representation
or the data is wrong. Wall seconds on a shared machine are noisy: compare curves by steps.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from touchstone.config import to_dict
from touchstone.errors import UserError
from touchstone.evaluate import claim_contrast, judge_records
from touchstone.files import write_json_atomic
from touchstone.generate import load_model
from touchstone.judge import Judge
from touchstone.records import is_pair
from touchstone.report import save_figure
from touchstone.synth import EXTRA_SUITES, heldout_suite
from touchstone.train.finetune import FinetuneConfig, finetune, read_records
from touchstone.worlds import WORLDS


@dataclass
class Point:
    step: int
    train_seconds: float
    cpu_seconds: float
    worlds: dict


def study(
    model_dir: str | Path,
    data_files: list[str],
    out: str | Path,
    cfg: FinetuneConfig | None = None,
    every: int = 100,
    worlds: list[str] | None = None,
    limit: int | None = None,
    contrast: int = 0,
) -> dict:
    """Fine-tune `model_dir` on `data_files` with `cfg`, scoring the held-out suites of `worlds` (at most
    `limit` records each) every `every` steps; write OUT/curve.json, OUT/curve.png and OUT/model.
    `contrast` K > 0 also scores each suite's claims through the pair skill, against K truth-blind
    contrasts of themselves where their world writes them (`touchstone eval --contrast`), as
    `claims_contrast` beside the direct `claims`."""
    cfg = cfg or FinetuneConfig()
    out = Path(out)
    if every < 1 or (limit is not None and limit < 1) or contrast < 0:
        raise UserError("study: --every and --limit must be at least 1, --contrast at least 0")
    if (out / "model").exists():
        raise UserError(f"{out / 'model'}: already exists; choose another --out")
    if worlds is None:
        worlds = sorted({r.get("world") for r in read_records(data_files)} & set(WORLDS))
        if not worlds:
            raise UserError("study: no record names a known world; give --worlds")
    for w in worlds:
        if w not in WORLDS and w not in EXTRA_SUITES:
            raise UserError(f"unknown world '{w}' (choose from {', '.join([*WORLDS, *EXTRA_SUITES])})")
    suites = {w: heldout_suite(w)[1][:limit] for w in worlds}
    header = {
        "base": str(model_dir),
        "data": [str(f) for f in data_files],
        "config": to_dict(cfg),
        "every": every,
        "limit": limit,
        "contrast": contrast,
        "suite_records": {w: len(s) for w, s in suites.items()},
    }
    curve = Curve(suites, every, out / "curve.json", header, contrast)
    out.mkdir(parents=True, exist_ok=True)
    print(_header(worlds), file=sys.stderr)
    report = finetune(model_dir, data_files, out / "model", cfg, callback=curve.callback)
    if curve.points[-1].step != report["steps"]:  # the last step falls between points: score the saved model
        curve.score(report["steps"], *load_model(out / "model"))
    result = {**header, "points": curve.rows(), "finetune": report}
    write_json_atomic(out / "curve.json", result)
    plot_curves(result, out / "curve.png")
    print(table(result))
    return result


class Curve:
    """The points of a study, scored from fine-tuning's callback, with the training's own wall and CPU
    seconds (evaluation is off both clocks); written to `path` after every point."""

    def __init__(self, suites: dict[str, list[dict]], every: int, path: Path, header: dict, contrast: int = 0):
        self.suites, self.every, self.path, self.header, self.contrast = suites, every, path, header, contrast
        # The claims to judge again through the pair skill: only worlds that write a contrast for some of
        # them, since for the others the second reading would repeat the direct one.
        asked = claim_contrast(contrast) if contrast else None
        self.contrasted = {
            w: claims
            for w, recs in suites.items()
            if asked and (claims := [r for r in recs if not is_pair(r)]) and any(asked(r) for r in claims)
        }
        self.points: list[Point] = []
        self.wall, self.cpu = 0.0, 0.0
        self.last_wall, self.last_cpu = time.monotonic(), time.process_time()

    def rows(self) -> list[dict]:
        return [p.__dict__ for p in self.points]

    def score(self, step: int, model, tokenizer) -> None:
        judge = Judge(model, tokenizer)
        worlds = {w: _summary(judge_records(judge, recs, progress=False)) for w, recs in self.suites.items()}
        for w, claims in self.contrasted.items():
            judged = judge_records(judge, claims, contrast=self.contrast, progress=False)
            worlds[w]["claims_contrast"] = judged["claims"]["accuracy"]
        for w in set(self.suites) - set(self.contrasted):
            if self.contrast and "claims" in worlds[w]:  # no claim of it has a contrast: read directly, as above
                worlds[w]["claims_contrast"] = worlds[w]["claims"]
        self.points.append(Point(step, round(self.wall, 1), round(self.cpu, 1), worlds))
        print(_row(self.points[-1]), file=sys.stderr, flush=True)
        write_json_atomic(self.path, {**self.header, "points": self.rows()})

    def callback(self, step: int, model, tokenizer) -> None:
        # Training time since the last call (the first comes before any).
        if step > 0:
            self.wall += time.monotonic() - self.last_wall
            self.cpu += time.process_time() - self.last_cpu
        if step % self.every == 0:
            self.score(step, model, tokenizer)
        self.last_wall, self.last_cpu = time.monotonic(), time.process_time()


def _summary(judged: dict) -> dict:
    """The figures a curve keeps of one `judge_records` result."""
    s = {"accuracy": judged["accuracy"], "n": judged["n"]}
    for form in ("pairs", "claims"):
        if form in judged:
            s[form] = judged[form]["accuracy"]
    s["per_kind"] = {k: v["accuracy"] for k, v in judged.get("per_kind", {}).items()}
    return s


def _header(worlds: list[str]) -> str:
    return "step  train_s  cpu_s  " + "  ".join(f"{w:>20}" for w in worlds) + "   (accuracy pairs/claims, %)"


def _cell(s: dict) -> str:
    pc = "/".join(f"{100 * s[f]:.0f}" if f in s else "-" for f in ("pairs", "claims"))
    through_pairs = f" c{100 * s['claims_contrast']:.0f}" if "claims_contrast" in s else ""
    return f"{100 * s['accuracy']:.1f} ({pc}){through_pairs}"


def _row(p: Point) -> str:
    return f"{p.step:>4}  {p.train_seconds:>7.0f}  {p.cpu_seconds:>5.0f}  " + "  ".join(
        f"{_cell(s):>20}" for s in p.worlds.values()
    )


def table(result: dict) -> str:
    """The curve as a Markdown table: one row per point, one column per world."""
    points = result["points"]
    worlds = list(points[0]["worlds"]) if points else []
    lines = [
        "| step | train min | CPU min | " + " | ".join(f"{w} (pairs/claims)" for w in worlds) + " |",
        "|---:|---:|---:|" + "---:|" * len(worlds),
    ]
    for p in points:
        lines.append(
            f"| {p['step']} | {p['train_seconds'] / 60:.1f} | {p['cpu_seconds'] / 60:.1f} | "
            + " | ".join(_cell(p["worlds"][w]) for w in worlds)
            + " |"
        )
    return "\n".join(lines)


def plot_curves(result: dict, path: Path) -> None:
    """Accuracy against steps, one panel per world: overall, pairs and claims; chance at 50%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    worlds = list(points[0]["worlds"]) if points else []
    if not worlds:
        return
    fig, axes = plt.subplots(1, len(worlds), figsize=(3.2 * len(worlds), 3), squeeze=False, sharey=True)
    steps = [p["step"] for p in points]
    for ax, w in zip(axes[0], worlds):
        for key, style in (("accuracy", "-k"), ("pairs", "--b"), ("claims", ":r"), ("claims_contrast", "-.m")):
            ys = [100 * p["worlds"][w][key] for p in points if key in p["worlds"][w]]
            if len(ys) == len(steps):
                ax.plot(steps, ys, style, marker=".", label=key)
        ax.axhline(50, color="grey", lw=0.5)
        ax.set_title(w)
        ax.set_xlabel("steps")
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("held-out accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    save_figure(fig, path)

"""The workspace as data: what `touchstone status` and `history` show, and each model's report.

Read-only: the server never writes into the workspace. The history plot is `touchstone.loop.
write_reports` itself, pointed at a private folder of the server's (a copy of the workspace paths with
another `reports`), so the page shows the very plot `touchstone history` draws."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import threading
from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import MANIFEST
from touchstone.loop.history import status, write_reports
from touchstone.loop.ledger import generation_stats
from touchstone.loop.workspace import KEPT_OF_REJECTED, Workspace, data_counts
from touchstone.serve.errors import NotFound

matplotlib_lock = threading.Lock()  # pyplot keeps global state; one drawing at a time


def _ledger(ws: Workspace):
    from touchstone.loop.ledger import Ledger

    if not ws.ledger_path.exists():
        raise NotFound(
            f"{ws.root}: not a Touchstone workspace yet (no ledger.sqlite); press Retrain "
            "to start one, or run `touchstone run`"
        )
    return Ledger(ws.ledger_path)


def _suites(model_dir: Path) -> dict:
    path = model_dir / "eval.json"
    if not path.exists():
        return {}
    suites = json.loads(path.read_text(encoding="utf-8")).get("suites", {})
    return {w: {k: v for k, v in s.items() if k != "correct"} for w, s in suites.items()}


def loop_status(ws: Workspace) -> dict:
    """`touchstone status` as data, and its text."""
    ledger = _ledger(ws)
    try:
        gens = ledger.generations()
        finished = [g for g in gens if g["gen"] > 0 and g["decision"]]
        in_progress = [
            {"generation": g["gen"], "done": sorted(ledger.done_steps(g["gen"]))} for g in gens if not g["decision"]
        ]
        champion = ws.champion()
        return {
            "workspace": str(ws.root),
            "champion": champion,
            "generation": max((g["gen"] for g in gens if g["decision"]), default=None),
            "finished": len(finished),
            "promoted": sum(g["decision"] == "promoted" for g in finished),
            "rejected": sum(g["decision"] == "rejected" for g in finished),
            "in_progress": in_progress,
            "data": data_counts(ws) if ws.orig.exists() else {},
            "held_out": {w: s["accuracy"] for w, s in _suites(ws.models / champion).items()} if champion else {},
            "last_decisions": [_decision(g) for g in finished[-5:]],
            "text": status(ws.root, ledger=ledger),
        }
    finally:
        ledger.close()


def _decision(g: dict) -> dict:
    stats = generation_stats(g)
    champ, chall = stats.get("suites_champion", {}), stats.get("suites_challenger", {})
    return {
        "generation": g["gen"],
        "decision": g["decision"],
        "challenger": g["challenger"],
        "champion_before": g["champion_before"],
        "trained_from": stats.get("base"),
        "p_value": g["p_value"],
        "reason": g["reason"],
        "gate": stats.get("gate"),
        "suites": {
            w: {
                "champion": champ[w],
                "challenger": chall.get(w),
                "change": None if chall.get(w) is None else chall[w] - champ[w],
            }
            for w in champ
        },
    }


class History:
    """`touchstone history` as data, with its Markdown and plot written to a folder of the server's own,
    redrawn only when the ledger has moved on."""

    def __init__(self):
        self._dir = Path(tempfile.mkdtemp(prefix="touchstone-serve-"))
        self._key = None

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)  # the server's own folder, made in __init__

    @property
    def plot_path(self) -> Path:
        return self._dir / "history.png"

    def get(self, ws: Workspace) -> dict:
        ledger = _ledger(ws)
        try:
            gens = ledger.generations()
            steps = ledger.step_times()
            key = (str(ws.root), json.dumps(gens, sort_keys=True, default=str), len(steps), ws.champion())
            with matplotlib_lock:
                if key != self._key or not (self._dir / "history.md").exists():
                    view = copy.copy(ws)
                    view.reports = self._dir
                    self.plot_path.unlink(missing_ok=True)
                    write_reports(view, ledger)
                    self._key = key
            times: dict[int, dict[str, float]] = {}
            for gen, step, seconds in steps:
                times.setdefault(gen, {})[step] = seconds
            return {
                "generations": [_generation(g, times.get(g["gen"], {})) for g in gens],
                "markdown": (self._dir / "history.md").read_text(encoding="utf-8"),
                "plot": self.plot_path.exists(),
            }
        finally:
            ledger.close()


def _generation(g: dict, times: dict) -> dict:
    out = {
        "generation": g["gen"],
        "decision": g["decision"],
        "started": g["started"],
        "finished": g["finished"],
        "step_seconds": times,
    }
    if g["gen"] == 0:
        out["suites"] = generation_stats(g).get("suites", {})
        out["reason"] = g["reason"]
        return out
    if g["decision"]:
        out.update(_decision(g))
    return out


# ---------------------------------------------------------------------------------------------- models
def model_dirs(ws: Workspace, extra: str | None) -> dict[str, Path]:
    """Every model of the workspace by name, and the served --model under its folder name. A complete
    model has its manifest; a rejected challenger whose weights the loop deleted still has its report,
    eval and recipe (`KEPT_OF_REJECTED`), and is listed with `weights` False so its report stays readable."""
    out = {}
    if ws.models.is_dir():
        for d in sorted(ws.models.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            if (d / MANIFEST).exists() or any((d / kept).exists() for kept in KEPT_OF_REJECTED):
                out[d.name] = d
    if extra is not None:
        out.setdefault(Path(extra).name, Path(extra))
    return out


def _yaml(path: Path):
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None


def model_summary(name: str, d: Path, champion: str | None) -> dict:
    manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8")) if (d / MANIFEST).exists() else {}
    recipe = _yaml(d / "recipe.yaml") or {}
    loop = recipe.get("loop") or {}
    return {
        "name": name,
        "champion": name == champion,
        "stage": manifest.get("stage") or recipe.get("stage"),
        "created": (d / MANIFEST).stat().st_mtime if (d / MANIFEST).exists() else None,
        "held_out": {w: s["accuracy"] for w, s in _suites(d).items()},
        "generation": loop.get("generation"),
        "trained_from": loop.get("base") or _base_name(recipe),
        "weights": (d / "config.json").exists(),  # a transformers model folder, not just its reports
    }


def _base_name(recipe: dict) -> str | None:
    base = recipe.get("base")
    return Path(base["path"]).name if isinstance(base, dict) and base.get("path") else None


def model_report(name: str, d: Path, champion: str | None, all_models: dict[str, Path]) -> dict:
    """A model's recipe, eval results, lineage (its chain of `trained_from` back to pretraining), its
    Markdown reports and the PNG plots beside them."""
    summary = model_summary(name, d, champion)
    lineage, seen, here = [], {name}, summary
    while here.get("trained_from") and here["trained_from"] in all_models and here["trained_from"] not in seen:
        parent = here["trained_from"]
        seen.add(parent)
        here = model_summary(parent, all_models[parent], champion)
        lineage.append({"name": parent, "stage": here["stage"], "generation": here["generation"]})
    reports = {p.name: p.read_text(encoding="utf-8") for p in sorted(d.glob("*.md"))}
    plots = sorted(p.name for p in d.glob("*.png"))
    manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8")) if (d / MANIFEST).exists() else {}
    return {
        **summary,
        "recipe": _yaml(d / "recipe.yaml"),
        "eval": _suites(d),
        "manifest": {k: v for k, v in manifest.items() if k != "files"},
        "lineage": lineage,
        "reports": reports,
        "plots": plots,
    }


def model_file(d: Path, filename: str) -> Path:
    """A report or plot of a model folder, by bare name (no path may leave the folder)."""
    if "/" in filename or "\\" in filename or filename.startswith(".") or not filename.endswith((".png", ".md")):
        raise UserError(f"{filename}: not a report or plot of this model")
    path = d / filename
    if not path.is_file():
        raise NotFound(f"{d.name}/{filename}: no such file")
    return path

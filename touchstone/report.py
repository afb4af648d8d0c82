"""The evaluation report: one Markdown page and its PNG plots, written beside the results JSON.

    NAME.md             one row per task (accuracy with its 95% interval, n, the task's own figures),
                        per-label metrics, accuracy per record kind, the provenance
    NAME-tasks.png      accuracy per task with its interval
    NAME-paradigms.png  per-file (paradigm) accuracy of each minimal-pairs task, sorted

Guaranteed: written atomically; plots are only drawn for what exists (no minimal pairs, no paradigm plot).
"""

from __future__ import annotations

from pathlib import Path

from touchstone.files import atomic_file, write_text_atomic


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _short(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    return f"{kind}:{Path(arg).name or arg}"


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display), imported on first use: matplotlib
    is slow to import and only the report and the plots need it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    plt = pyplot()
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def report_files(name: str) -> list[str]:
    """The files a report named `name` may write: the page, then its plots."""
    return [f"{name}.md", f"{name}-tasks.png", f"{name}-paradigms.png"]


def plot_tasks(results: dict, path: Path) -> bool:
    plt = pyplot()
    rows = [(_short(name), r) for name, r in results["tasks"].items() if r.get("accuracy") is not None]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    acc = [100 * r["accuracy"] for _, r in rows]
    err = [
        [100 * (r["accuracy"] - r["ci95"][0]) for _, r in rows],
        [100 * (r["ci95"][1] - r["accuracy"]) for _, r in rows],
    ]
    ax.barh([n for n, _ in rows], acc, xerr=err, color="tab:blue", capsize=3)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%), with 95% Wilson interval")
    ax.invert_yaxis()
    save_figure(fig, path)
    return True


def plot_paradigms(results: dict, path: Path) -> bool:
    plt = pyplot()
    tasks = [(name, r["per_file"]) for name, r in results["tasks"].items() if r.get("per_file")]
    if not tasks:
        return False
    height = max(len(per) for _, per in tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 0.17 * height + 1.5), squeeze=False)
    for ax, (name, per) in zip(axes[0], tasks):
        items = sorted(per.items(), key=lambda kv: kv[1]["accuracy"])
        ax.barh([k for k, _ in items], [100 * v["accuracy"] for _, v in items], color="tab:green")
        ax.axvline(50, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0, 100)
        ax.set_title(_short(name), fontsize=9)
        ax.set_xlabel("accuracy (%)")
        ax.tick_params(axis="y", labelsize=6)
    save_figure(fig, path)
    return True


def write_report(results: dict, directory: str | Path, name: str = "eval") -> Path:
    """Write NAME.md and its plots into `directory`; returns the Markdown path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Evaluation of `{results['model']}`",
        "",
        "| task | accuracy | 95% CI | n | other |",
        "|---|---|---|---|---|",
    ]
    for spec, r in results["tasks"].items():
        acc = f"{100 * r['accuracy']:.2f}%" if r.get("accuracy") is not None else "-"
        ci = f"{100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}" if r.get("ci95") else "-"
        other = ", ".join(
            f"{k} {_fmt(v)}"
            for k, v in r.items()
            if k not in ("accuracy", "ci95", "n", "correct", "signature") and not isinstance(v, (dict, list))
        )
        lines.append(f"| `{spec}` | {acc} | {ci} | {r.get('n')} | {other} |")
    for spec, r in results["tasks"].items():
        for kind in ("", "pairs", "claims"):
            m = r.get(kind) if kind else r
            if not isinstance(m, dict) or "per_label" not in m or not m["per_label"]:
                continue
            lines += [
                "",
                f"### `{spec}` {kind}".rstrip(),
                "",
                "| label | precision | recall | F1 | support |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {lab} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
                for lab, v in m["per_label"].items()
            ]
            lines.append(f"| macro | {m['macro_precision']:.3f} | {m['macro_recall']:.3f} | {m['macro_f1']:.3f} | |")
    for spec, r in results["tasks"].items():
        if r.get("per_kind"):
            lines += ["", f"### `{spec}` by kind", "", "| kind | accuracy | 95% CI | n |", "|---|---|---|---|"]
            lines += [
                f"| {k} | {100 * v['accuracy']:.1f}% | {100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f} | {v['n']} |"
                for k, v in r["per_kind"].items()
            ]
    plots = list(zip(report_files(name)[1:], (plot_tasks, plot_paradigms)))
    drawn = [fname for fname, draw in plots if draw(results, directory / fname)]
    lines += [""] + [f"![{f}]({f})" for f in drawn]
    p = results["provenance"]
    lines += [
        "",
        "## Provenance",
        "",
        f"- model sha256: `{p['model_sha256']}`",
        f"- git commit: `{p['git_commit']}`",
        f"- touchstone {p['touchstone_version']}; settings: {p['config']}",
    ]
    lines += [f"- `{spec}` version {v}" for spec, v in p["task_versions"].items()]
    path = directory / f"{name}.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr (so JSON on stdout stays clean), drawn only for jobs long enough to watch."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled or total < 512, leave=False)

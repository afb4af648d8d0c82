"""What the loop did, for people: `touchstone status`, `touchstone history` (reports/history.md and
reports/history.png) and the scoreboard printed after each generation."""

from __future__ import annotations

import os
from pathlib import Path

from touchstone.files import read_json, write_text_atomic
from touchstone.loop.gate import paired_difference
from touchstone.loop.ledger import BOOTSTRAP_STEPS, STEPS, Ledger, generation_stats
from touchstone.loop.workspace import Workspace, data_counts


def scoreboard(ledger, gen: int) -> str:
    g = ledger.generation(gen)
    stats = generation_stats(g)
    lines = [
        f"generation {gen}: {g['decision'].upper()}  {g['challenger']} vs {g['champion_before']}",
        f"  {g['reason']}",
        f"  {'suite':<10} {'champion':>9} {'challenger':>11}",
    ]
    for w, acc in stats.get("suites_champion", {}).items():
        lines.append(f"  {w:<10} {acc:>9.3f} {stats['suites_challenger'][w]:>11.3f}")
    return "\n".join(lines)


def status(workspace: str | Path, ledger: Ledger | None = None) -> str:
    ws = Workspace(workspace)
    own = ledger is None
    if own:
        ledger = ws.open_ledger()
    try:
        gens = ledger.generations()
        finished = [g for g in gens if g["gen"] > 0 and g["decision"]]
        champion = ws.champion()
        lines = [
            f"workspace   {ws.root}",
            f"champion    {champion or '(none yet)'}",
            (
                f"generations {len(finished)} finished: {sum(g['decision'] == 'promoted' for g in finished)} "
                f"promoted, {sum(g['decision'] == 'rejected' for g in finished)} rejected"
            ),
        ]
        for g in gens:
            if not g["decision"]:
                steps = ledger.done_steps(g["gen"])
                lines.append(f"in progress generation {g['gen']}: done {', '.join(steps) or 'nothing yet'}")
        if ws.orig.exists():
            counts = data_counts(ws)
            lines.append("data        " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if champion and (ws.models / champion / "eval.json").exists():
            suites = read_json(ws.models / champion / "eval.json").get("suites", {})
            lines.append("held-out    " + ", ".join(f"{w} {s['accuracy']:.3f}" for w, s in suites.items()))
        for g in finished[-5:]:
            lines.append(f"gen {g['gen']:>4}  {g['decision']:<9} {g['reason']}")
        return "\n".join(lines)
    finally:
        if own:
            ledger.close()


def table(title: str, columns: list[str], rows: dict[int, list[str]]) -> list[str]:
    """A Markdown table of one row per generation, under its title."""
    lines = ["", title, "", "| gen | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    return lines + [f"| {gen} | " + " | ".join(cells) + " |" for gen, cells in rows.items()]


def history(workspace: str | Path) -> str:
    ws = Workspace(workspace)
    ledger = ws.open_ledger()
    try:
        png = write_reports(ws, ledger)
        return (ws.reports / "history.md").read_text(encoding="utf-8") + (f"\nplot: {png}\n" if png else "")
    finally:
        ledger.close()


def write_reports(ws: Workspace, ledger: Ledger) -> Path | None:
    """reports/history.md (decisions, held-out scores, step times) and reports/history.png."""
    gens = [g for g in ledger.generations() if g["decision"]]
    suites = {}
    for g in gens:
        stats = generation_stats(g)
        champ = (
            stats.get("suites")
            if g["gen"] == 0
            else (stats.get("suites_challenger") if g["decision"] == "promoted" else stats.get("suites_champion"))
        )
        suites[g["gen"]] = champ or {}
    worlds = sorted({w for s in suites.values() for w in s})
    lines = [
        "# Loop history",
        "",
        "| gen | decision | challenger | trained from | champion before | p | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in gens:
        p = f"{g['p_value']:.3g}" if g["p_value"] is not None else ""
        base = generation_stats(g).get("base", "")
        lines.append(
            f"| {g['gen']} | {g['decision']} | {g['challenger']} | {base} | {g['champion_before'] or ''} | {p} "
            f"| {g['reason']} |"
        )
    rows = {
        gen: [f"{s.get(w, float('nan')):.3f}" for w in worlds] + [f"{sum(s.values()) / len(s):.3f}"]
        for gen, s in suites.items()
        if s
    }
    lines += table("Held-out suite accuracy of the champion after each generation:", [*worlds, "mean"], rows)
    lines += against_generation_0(ws)
    times: dict[int, dict[str, float]] = {}
    for gen, step, seconds in ledger.step_times():
        times.setdefault(gen, {})[step] = seconds
    steps = [s for s in BOOTSTRAP_STEPS + STEPS if any(s in t for t in times.values())]
    rows = {
        gen: [f"{t[s] / 60:.1f}" if s in t else "" for s in steps] + [f"{sum(t.values()) / 60:.1f}"]
        for gen, t in sorted(times.items())
    }
    lines += table("Wall time per step (minutes):", [*steps, "total"], rows)
    ws.reports.mkdir(parents=True, exist_ok=True)
    write_text_atomic(ws.reports / "history.md", "\n".join(lines) + "\n")
    if not suites or not worlds:
        return None
    import matplotlib  # only to draw the plot: `touchstone status` never needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = sorted(suites)
    for w in worlds:
        ax.plot(xs, [suites[x].get(w, float("nan")) for x in xs], marker="o", label=w)
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.set_ylabel("held-out accuracy (champion)")
    ax.set_ylim(0, 1)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("Held-out suites per generation")
    fig.tight_layout()
    png = ws.reports / "history.png"
    tmp = png.with_name(".history.png.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
    return png


def against_generation_0(ws: Workspace) -> list[str]:
    """Lines comparing the champion with generation 0 on the same held-out records (paired 95% CI)."""
    champion = ws.champion()
    first, last = ws.model(0) / "eval.json", ws.models / str(champion) / "eval.json"
    if not champion or champion == "gen-0000" or not first.exists() or not last.exists():
        return []
    before = read_json(first).get("suites", {})
    after = read_json(last).get("suites", {})
    lines = [
        "",
        f"Champion {champion} against generation 0 on the held-out suites (paired, 95% CI):",
        "",
        "| suite | n | gen 0 | champion | difference | 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    pooled_before, pooled_after = [], []
    for w in sorted(set(before) & set(after)):
        if before[w]["version"] != after[w]["version"] or before[w]["n"] != after[w]["n"]:
            continue
        b, a = [bool(x) for x in before[w]["correct"]], [bool(x) for x in after[w]["correct"]]
        pooled_before += b
        pooled_after += a
        d = paired_difference(b, a)
        lines.append(
            f"| {w} | {d['n']} | {d['before']:.3f} | {d['after']:.3f} | {d['difference']:+.3f} | "
            f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |"
        )
    if pooled_before:
        d = paired_difference(pooled_before, pooled_after)
        lines.append(
            f"| all | {d['n']} | {d['before']:.3f} | {d['after']:.3f} | {d['difference']:+.3f} | "
            f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |"
        )
    return lines

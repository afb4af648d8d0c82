"""Step 3, rework: the training-data compiler (touchstone.lint) over all of data/new (schema, duplicates,
conflicting labels, evaluation overlap), a re-verification audit of older records, and the records where
the champion's judgement and the label disagree, re-checked: the verifier upholding the label makes a hard
example, overruling it quarantines the record.

Output, data/rework/gen-NNNN/, each record with `rework` = {"reasons", "original_id", "source"}:
- fixed.jsonl: the records of data/new that a fix rewrote (lint's `Entry.fixed` ones), as rewritten, with
  `parent` = the original id; the training draw uses them in place of their originals. Only those, not
  every clean record as `touchstone lint --fix` writes: the rework covers all of data/new every
  generation, and a full copy each time would grow the workspace by all of data/new per generation;
- quarantine.jsonl: records lint quarantines, older records the audit's verifiers now reject, and records
  whose verifier overrules the label; the training draw leaves them out;
- hard.jsonl: records the champion judged wrong whose verifier upholds the label; the draw repeats them.
"""

from __future__ import annotations

import random

from touchstone.files import atomic_dir, write_jsonl_atomic, write_manifest
from touchstone.lint import lint_files
from touchstone.loop.config import LoopConfig
from touchstone.loop.generation import Generation, by_world
from touchstone.loop.suites import judge_correct
from touchstone.loop.workspace import Workspace, records


def note(record: dict, reasons: list[str], original_id: str | None, source: str) -> dict:
    """`record` with its `rework` key: why it was set aside or rewritten, its id as read, and where from."""
    return {**record, "rework": {"reasons": reasons, "original_id": original_id, "source": source}}


def compiled(ws: Workspace) -> tuple[list, list[dict], list[dict]]:
    """Lint's static checks over all of data/new (its verification is the audit): the entries, the
    rewritten records and the quarantined ones."""
    entries, _ = lint_files([str(p) for p in ws.new_files()], verify=False)
    fixed, quarantine = [], []
    for e in entries:
        if e.quarantined:
            quarantine.append(e.quarantine_record())
        elif e.fixed:  # lint's fixed record, with the note of every diagnostic that led to the fix
            fixed.append({**e.fixed_record(), "rework": e.rework_note(e.reasons(errors_only=False))})
    return entries, fixed, quarantine


def rework(ws: Workspace, cfg: LoopConfig, g: Generation) -> dict:
    """Write data/rework/gen-NNNN/ (see the module docstring)."""
    rng = random.Random(g.seed(cfg, "rework"))
    this = ws.new_file(g.number)
    entries, fixed, quarantine = compiled(ws)
    hard = []
    done = {r["id"] for r in quarantine}
    # Rolling audit: older records re-verified with the current verifiers.
    older = [e.rec for e in entries if not e.where.startswith(str(this)) and e.rec.get("id") not in done]
    audit = rng.sample(older, min(cfg.reverify_sample, len(older)))
    audit_failed = 0
    for w, recs in by_world(audit).items():
        for r, v in zip(recs, g.worlds[w].verify_many(recs)):
            if not v.ok:
                audit_failed += 1
                done.add(r["id"])
                quarantine.append(note(r, [f"reverify: {v.reason}"], r["id"], "audit"))
    # Disagreements: where the champion's judgement differs from the label, ask the verifier again.
    recent = [r for r in records(this) if r["id"] not in done]
    probe = rng.sample(recent, min(cfg.disagreement_sample, len(recent)))
    right = judge_correct(ws.models / g.champion, probe) if probe else []
    disagreements = [r for r, ok in zip(probe, right) if not ok]
    source = f"champion {g.champion} disagreed with the label"
    for w, recs in by_world(disagreements).items():
        for r, v in zip(recs, g.worlds[w].verify_many(recs)):
            if v.ok:
                hard.append(note(r, ["verifier upholds the label"], r["id"], source))
            else:
                quarantine.append(note(r, [f"verifier overrules the label: {v.reason}"], r["id"], source))
    with atomic_dir(ws.rework / f"gen-{g.number:04d}", overwrite=True) as stage:
        write_jsonl_atomic(stage / "fixed.jsonl", fixed)
        write_jsonl_atomic(stage / "quarantine.jsonl", quarantine)
        write_jsonl_atomic(stage / "hard.jsonl", hard)
        write_manifest(stage, {"fixed": len(fixed), "quarantined": len(quarantine), "hard": len(hard)})
    return {
        "linted": len(entries),
        "fixed": len(fixed),
        "quarantined": len(quarantine),
        "hard": len(hard),
        "audited": len(audit),
        "audit_failed": audit_failed,
        "probed": len(probe),
        "disagreements": len(disagreements),
    }

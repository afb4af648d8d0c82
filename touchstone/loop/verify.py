"""Step 2, verify: every candidate re-checked by its world's verifier; only agreeing records, new and
outside the held-out suites and gate sets, enter data/new/gen-NNNN.jsonl with their verdict."""

from __future__ import annotations

from touchstone.files import write_jsonl_atomic
from touchstone.loop.config import LoopConfig
from touchstone.loop.generation import Generation, by_world
from touchstone.loop.workspace import Workspace, ids_in, records
from touchstone.records import schema_errors
from touchstone.worlds.on_ray import verify_many_on_ray


def origin(record: dict) -> str:
    """Where a candidate came from, as the ledger counts it: champion, mutation or generator."""
    if str(record.get("source", "")).startswith("champion"):
        return "champion"
    return "mutation" if record.get("source") == "mutation" else "generator"


def verify(ws: Workspace, cfg: LoopConfig, g: Generation) -> dict:
    """Write data/new/gen-NNNN.jsonl and the ledger's candidate counts and records."""
    candidates = records(g.dir / "candidates.jsonl")
    reserved = g.banned_ids(ws)
    earlier = ids_in(p for p in ws.new_files() if p != ws.new_file(g.number))
    kept, seen, stats = [], set(), {}
    for w, recs in sorted(by_world(candidates).items()):
        if cfg.verify_on == "ray":
            verdicts = verify_many_on_ray(w, recs, corpus=str(ws.orig))
        else:
            verdicts = g.worlds[w].verify_many(recs)
        for r, v in zip(recs, verdicts):
            source = origin(r)
            row = stats.setdefault(
                (w, source), {"world": w, "source": source, "made": 0, "verified": 0, "rejected": 0, "reasons": {}}
            )
            row["made"] += 1
            why = None
            if not v.ok:
                why = v.reason
            elif r["id"] in reserved:
                why = "held_out_or_gate"
            elif r["id"] in earlier:
                why = "already_in_data_new"
            elif r["id"] in seen:
                why = "duplicate"
            elif schema_errors(r):
                why = "schema"
            if why:
                row["rejected"] += 1
                row["reasons"][why] = row["reasons"].get(why, 0) + 1
                continue
            row["verified"] += 1
            seen.add(r["id"])
            kept.append({**r, "verdict": v.to_dict()})
    write_jsonl_atomic(ws.new_file(g.number), kept)
    with g.ledger.transaction():
        g.ledger.add_candidates(g.number, list(stats.values()))
        g.ledger.add_records(g.number, kept)
    return {
        "verified": len(kept),
        "rejected": sum(s["rejected"] for s in stats.values()),
        "by_world": {w: sum(s["verified"] for s in stats.values() if s["world"] == w) for w in by_world(candidates)},
    }

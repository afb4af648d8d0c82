"""Record formats: text, pair and claim (one JSON object per JSONL line), and the external formats we
read as they are (BLiMP minimal pairs, claims as CSV/JSONL with `statement` and `label`).

A record's `id` is the sha256 of its canonical content (the fields that define what it says, not its
provenance), so the same content has the same id wherever it was made.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import read_jsonl, read_text

# The fields that define a record's content, by kind; everything else is provenance.
CONTENT_FIELDS = {
    "text": ("text",),
    "pair": ("prompt", "a", "b", "label"),
    "claim": ("statement", "label"),
}
REQUIRED = {
    "text": {"id": str, "text": str, "source": str},
    "pair": {"id": str, "kind": str, "prompt": str, "a": str, "b": str, "label": str, "world": str},
    "claim": {"id": str, "kind": str, "statement": str, "label": bool, "world": str},
}


def content_id(type_: str, /, **content) -> str:
    """sha256 of the canonical JSON of the content fields of a record of this type (text/pair/claim)."""
    canon = {k: content[k] for k in CONTENT_FIELDS[type_]}
    canon["_type"] = type_
    blob = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def record_type(rec: dict) -> str:
    """'pair' (it has `a` or `b`), 'claim' (`statement`) or 'text', from the fields present: the one test
    of what a record is. A KeyError when it is none of them."""
    if "a" in rec or "b" in rec:
        return "pair"
    if "statement" in rec:
        return "claim"
    if "text" in rec:
        return "text"
    raise KeyError("no 'a'/'b', 'statement' or 'text' field")


def is_pair(rec: dict) -> bool:
    return record_type(rec) == "pair"


def swapped(pair: dict) -> dict:
    """A pair record in the other order: a and b, the label, and the verdict's per-version evidence
    (and its "better") exchanged, so everything about "a" is still about the version shown first."""
    out = {**pair, "a": pair["b"], "b": pair["a"], "label": {"a": "b", "b": "a"}.get(pair["label"], pair["label"])}
    evidence = (pair.get("verdict") or {}).get("evidence")
    if isinstance(evidence, dict) and "a" in evidence and "b" in evidence:
        mirrored = {**evidence, "a": evidence["b"], "b": evidence["a"]}
        if evidence.get("better") in ("a", "b"):
            mirrored["better"] = "b" if evidence["better"] == "a" else "a"
        out["verdict"] = {**pair["verdict"], "evidence": mirrored}
    return out


def is_judged(obj: dict) -> bool:
    """Is `obj` a pair or claim record, as opposed to a text record or a world's raw item?"""
    try:
        return record_type(obj) != "text"
    except KeyError:
        return False


def judge_right(record: dict, judged: dict) -> bool:
    """Did the judge's answer (`touchstone.judge.Judge.records`: its "choice") match the record's label?"""
    return str(judged["choice"]).lower() == str(record["label"]).lower()


def text_record(text: str, source: str) -> dict:
    return {"id": content_id("text", text=text), "text": text, "source": source}


def judged_record(
    form: str,
    content: dict,
    *,
    world: str,
    kind: str,
    verdict=None,
    source: str = "",
    parent: str | None = None,
    generation: int | None = None,
) -> dict:
    """A pair or claim record: its form's `content` fields (in their order), its id and its provenance."""
    provenance = {"world": world, "verdict": verdict, "source": source, "parent": parent, "generation": generation}
    return {"id": content_id(form, **content), "kind": kind, **content, **provenance}


def pair_record(prompt: str, a: str, b: str, label: str, **provenance) -> dict:
    """A pair record; `provenance` is `judged_record`'s keywords (world and kind required)."""
    assert label in ("a", "b"), label
    return judged_record("pair", {"prompt": prompt, "a": a, "b": b, "label": label}, **provenance)


def claim_record(statement: str, label: bool, **provenance) -> dict:
    """A claim record; `provenance` is `judged_record`'s keywords (world and kind required)."""
    return judged_record("claim", {"statement": statement, "label": bool(label)}, **provenance)


def schema_errors(rec: dict) -> list[str]:
    """Problems with a record's schema, each naming the key; empty when the record is well-formed."""
    try:
        kind = record_type(rec)
    except KeyError as e:
        return [str(e).strip("'\"")]
    errors = []
    for key, typ in REQUIRED[kind].items():
        if key not in rec:
            errors.append(f"missing key '{key}'")
        elif not isinstance(rec[key], typ):
            errors.append(f"key '{key}' should be {typ.__name__}, got {type(rec[key]).__name__}")
    if kind == "pair" and rec.get("label") not in ("a", "b"):
        errors.append(f'key \'label\' should be "a" or "b", got {rec.get("label")!r}')
    if not errors:
        expect = content_id(kind, **rec)
        if rec["id"] != expect:
            errors.append(f"key 'id' is not the sha256 of the content (expected {expect[:12]}...)")
    return errors


def parse_label(value, where: str) -> bool:
    """Accept true/false, 1/0, "true"/"false", "1"/"0", "yes"/"no" as a claim label."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "t", "0", "false", "no", "f"):
        return value.strip().lower() in ("1", "true", "yes", "t")
    raise UserError(f"{where}: key 'label' must be true/false or 1/0, got {value!r}")


def parse_record(obj: dict, where: str, expect: str | None = None, text_sides: bool = True) -> dict:
    """A pair or claim record checked and normalised, or a UserError "{where}: ..." naming the key.

    A line with `a` or `b` is a pair (`a`, `b` and a `label` of "a" or "b"; `prompt` may be missing or
    null and becomes ""), one with `statement` a claim (its `label` read by `parse_label`); `expect`
    ("pair" or "claim") asks for that kind only. `text_sides=False` lets a pair's sides be any JSON
    value (a world's raw items, such as wing designs)."""
    kind = expect or (record_type(obj) if is_judged(obj) else None)
    if kind == "pair":
        for key in ("a", "b", "label"):
            if key not in obj:
                raise UserError(f"{where}: missing key '{key}'")
        if obj["label"] not in ("a", "b"):
            raise UserError(f'{where}: key \'label\' must be "a" or "b", got {obj["label"]!r}')
        _strings(obj, ("a", "b", "prompt") if text_sides else ("prompt",), where)
        rec = {"prompt": "", **obj}
        rec["prompt"] = rec["prompt"] or ""
        return rec
    if kind == "claim":
        for key in ("statement", "label"):
            if key not in obj:
                raise UserError(f"{where}: missing key '{key}'")
        _strings(obj, ("statement",), where)
        return {**obj, "label": parse_label(obj["label"], where)}
    raise UserError(f"{where}: not a pair (a, b, label) or claim (statement, label) record")


def read_claims(path: str | Path) -> Iterator[dict]:
    """Claims from claim records, or any CSV/JSONL with `statement` and `label` columns."""
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".csv"):
        with io.StringIO(read_text(path, "CSV file"), newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"statement", "label"} <= set(reader.fieldnames):
                raise UserError(f"{path}:1: CSV header must have 'statement' and 'label' columns")
            for lineno, row in enumerate(reader, 2):
                yield {
                    "statement": row["statement"],
                    "label": parse_label(row["label"], f"{path}:{lineno}"),
                    "world": row.get("world") or "external",
                    "id": row.get("id"),
                }
        return
    for lineno, obj in read_jsonl(path):
        yield parse_record(obj, f"{path}:{lineno}", expect="claim")


def _strings(obj: dict, keys: tuple[str, ...], where: str) -> None:
    """Each of `keys` (that is present and not null) holds text; else a UserError naming the key."""
    for key in keys:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise UserError(f"{where}: key '{key}' must be text, got {type(obj[key]).__name__}")


def read_pairs(path: str | Path) -> Iterator[dict]:
    """Pair records; a line missing a/b/label is a UserError naming it."""
    for lineno, obj in read_jsonl(path):
        yield parse_record(obj, f"{path}:{lineno}", expect="pair")


def read_minimal_pairs(path: str | Path) -> Iterator[dict]:
    """BLiMP-style records with `sentence_good` and `sentence_bad`."""
    for lineno, obj in read_jsonl(path):
        for key in ("sentence_good", "sentence_bad"):
            if key not in obj:
                raise UserError(f"{path}:{lineno}: missing key '{key}'")
        _strings(obj, ("sentence_good", "sentence_bad"), f"{path}:{lineno}")
        yield obj


def jsonl_files(path: str | Path) -> list[Path]:
    """A file, or every *.jsonl / *.jsonl.gz under a folder (sorted); an empty folder is a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
    if not files:
        raise UserError(f"{path}: no .jsonl or .jsonl.gz files in this folder")
    return files

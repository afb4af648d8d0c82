"""The training-data compiler: `touchstone lint FILE... [--fix DIR] [--eval-set PATH] [--no-verify]`.

Checks pair, claim and text records like a compiler checks code, and prints one diagnostic a line,
`file:line: error[E012]: message`, then a summary. Exit status: 0 when no errors remain (warnings are
allowed), 1 when errors remain, 2 when an input cannot be read at all. With `--fix DIR` every error
is resolved, either fixed or quarantined, so the status is 0 unless writing fails.

Codes (stable; new checks get new numbers, old numbers are never reused):
  E001 invalid UTF-8                        E002 malformed JSON, or not a JSON object
  E003 schema: a missing key or wrong type  E004 id is not the sha256 of the content (fixable)
  E005 empty field                          E006 replacement or control characters (broken encoding)
  E007 pair whose two versions are equal    E010 exact duplicate of an earlier record (same id)
  E012 the same content with conflicting labels
  E013 overlaps an evaluation set (BLiMP sentence, HumanEval prompt/solution, WikiText-2 13-gram)
  E014 the world's verifier disagrees with the label
  W101 overlong field (over MAX_FIELD characters)
  W102 text not in Unicode NFC or with stray whitespace (fixable)
  W111 near duplicate of an earlier record (MinHash Jaccard >= NEAR_DUP)
  W115 unknown world: not re-verified       W116 the verifier could not check the record

`--fix DIR` writes, atomically, what `write_fixes` says: DIR/fixed.jsonl, DIR/quarantine.jsonl and
DIR/MANIFEST.json. Inputs are never modified.

As a library: `lint_files` returns an `Entry` per record read (where it is, the record as fixed, its
diagnostics) and the diagnostics of the lines that are no record; `write_fixes` writes a rework
directory from the entries; `Entry.quarantine_record` and `Entry.fixed_record` are the records it writes.

Evaluation sets: by default the BLiMP, HumanEval and WikiText-2 files found under $TOUCHSTONE_EVAL_DATA,
or else the shared data folder (`touchstone.contamination`); `--eval-set PATH` (file or folder; repeatable)
replaces the defaults. Not guaranteed: paraphrases of evaluation items are not caught, only exact
sentences (after normalizing case, spacing and punctuation) and shared runs of 13 words.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

from touchstone.contamination import EvalIndex, default_eval_sets, normalize
from touchstone.errors import UserError
from touchstone.files import (
    atomic_dir,
    check_output,
    is_binary,
    open_binary,
    write_jsonl_atomic,
    write_manifest,
)
from touchstone.records import CONTENT_FIELDS, content_id, is_pair, record_type, schema_errors
from touchstone.worlds import WORLDS, get_world

MAX_FIELD = 20_000
NEAR_DUP = 0.9
TEXT_FIELDS = ("text", "prompt", "a", "b", "statement")
BAD_CHARS = re.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Diagnostic:
    def __init__(self, where: str, code: str, message: str):
        self.where, self.code, self.message = where, code, message

    @property
    def error(self) -> bool:
        return self.code.startswith("E")

    def __str__(self) -> str:
        return f"{self.where}: {'error' if self.error else 'warning'}[{self.code}]: {self.message}"


# ---------------------------------------------------------------------------------------------- lint
class Entry:
    """One record as lint read it: `where` (file:line), `rec` (the record, fixed in place: text in NFC,
    id recomputed), `diags` (its diagnostics), `original_id` (the id as read) and `fixed` (whether a fix
    changed the record)."""

    def __init__(self, where: str, rec: dict):
        self.where, self.rec = where, rec
        self.diags: list[Diagnostic] = []
        self.original_id = rec.get("id")
        self.fixed = False

    def add(self, code: str, message: str):
        self.diags.append(Diagnostic(self.where, code, message))

    @property
    def quarantined(self) -> bool:
        """Whether an error remains that no fix resolves (a wrong id, E004, is fixed by recomputing it)."""
        return any(d.error and d.code != "E004" for d in self.diags)

    def reasons(self, errors_only: bool = True) -> list[str]:
        """ "CODE: message" of each error (or of every diagnostic)."""
        return [f"{d.code}: {d.message}" for d in self.diags if d.error or not errors_only]

    def rework_note(self, reasons: list[str]) -> dict:
        """The `rework` key of a record set aside: why, its id as read, and where it was read."""
        return {"reasons": reasons, "original_id": self.original_id, "source": self.where}

    def quarantine_record(self) -> dict:
        """The record as quarantine.jsonl holds it: with `rework` naming its errors."""
        return {**self.rec, "rework": self.rework_note(self.reasons())}

    def fixed_record(self) -> dict:
        """The record as fixed.jsonl holds it: as read, or if a fix changed it, with `parent` = its original id."""
        return {**self.rec, "parent": self.original_id} if self.fixed else self.rec


def _read(path: Path) -> tuple[list[Entry], list[Diagnostic]]:
    """Records of one file; bad lines become diagnostics; an unreadable file is a UserError."""
    entries, diags = [], []
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if is_binary(path):
        raise UserError(f"{path}: a binary file, not JSONL records")
    try:
        with open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                where = f"{path}:{lineno}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    diags.append(Diagnostic(where, "E001", f"invalid UTF-8 ({e.reason} at byte {e.start})"))
                    continue
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    diags.append(Diagnostic(where, "E002", f"malformed JSON ({e.msg} at column {e.colno})"))
                    continue
                if not isinstance(obj, dict):
                    diags.append(Diagnostic(where, "E002", f"expected a JSON object, got {type(obj).__name__}"))
                    continue
                entries.append(Entry(where, obj))
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    return entries, diags


def _check_fields(e: Entry) -> None:
    rec = e.rec
    errors = schema_errors(rec)
    id_errors = [m for m in errors if m.startswith("key 'id' is not")]
    for msg in errors:
        if msg not in id_errors:
            e.add("E003", msg)
    if any(d.code == "E003" for d in e.diags):
        return
    for key in TEXT_FIELDS:
        value = rec.get(key)
        if not isinstance(value, str):
            continue
        if key != "prompt" and not value.strip():
            e.add("E005", f"key '{key}' is empty")
        elif len(value) > MAX_FIELD:
            e.add("W101", f"key '{key}' has {len(value)} characters (over {MAX_FIELD})")
        if BAD_CHARS.search(value):
            e.add("E006", f"key '{key}' contains replacement or control characters (broken encoding?)")
        tidy = unicodedata.normalize("NFC", value)
        if tidy != value:
            e.add("W102", f"key '{key}' is not in Unicode NFC (fixable)")
            rec[key] = tidy
            e.fixed = True
    if "a" in rec and rec.get("a") == rec.get("b"):
        e.add("E007", "the two versions 'a' and 'b' are identical")
    kind = record_type(rec)
    expect = content_id(kind, **{k: rec[k] for k in CONTENT_FIELDS[kind]})
    if id_errors:
        e.add("E004", "key 'id' is not the sha256 of the content (fixable)")
    if rec["id"] != expect:  # a wrong id, or a right one for the text before NFC
        rec["id"] = expect
        e.fixed = True


def _check_duplicates(entries: list[Entry]) -> None:
    from datasketch import MinHash, MinHashLSH

    first: dict[str, Entry] = {}
    by_content: dict[str, list[Entry]] = defaultdict(list)
    lsh = MinHashLSH(threshold=NEAR_DUP, num_perm=64)
    for i, e in enumerate(entries):
        rec = e.rec
        if rec["id"] in first:
            e.add("E010", f"exact duplicate of {first[rec['id']].where}")
            continue
        first[rec["id"]] = e
        kind = record_type(rec)
        # What the label is about: pairs compare unordered versions, so (a, b) and (b, a) are one.
        if kind == "pair":
            key = json.dumps([rec["prompt"], sorted([rec["a"], rec["b"]])])
        elif kind == "claim":
            key = json.dumps([rec["statement"]])
        else:
            key = None
        if key is not None:
            by_content[key].append(e)
        text = "\n".join(str(rec.get(k, "")) for k in TEXT_FIELDS)
        m = MinHash(num_perm=64)
        m.update_batch(w.encode("utf-8") for w in set(normalize(text).split()))
        near = lsh.query(m)
        if near:
            e.add("W111", f"near duplicate of {entries[int(near[0])].where}")
        lsh.insert(str(i), m)
    for group in by_content.values():
        answers = {_correct_text(e.rec) for e in group}
        if len(answers) > 1:
            for e in group:
                others = ", ".join(o.where for o in group if o is not e)
                e.add("E012", f"the same content is labelled differently at {others}")


def _correct_text(rec: dict):
    return rec[rec["label"]] if is_pair(rec) else rec["label"]


def _verify(entries: list[Entry]) -> None:
    groups: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if "world" in e.rec and record_type(e.rec) in ("pair", "claim"):
            groups[e.rec["world"]].append(e)
    for name, group in groups.items():
        if name not in WORLDS:
            for e in group:
                e.add("W115", f"unknown world '{name}': not re-verified")
            continue
        world = get_world(name)
        try:
            verdicts = world.verify_many([e.rec for e in group])
        except Exception:  # noqa: BLE001 - find the records the verifier cannot handle, one by one
            verdicts = []
            for e in group:
                try:
                    verdicts.append(world.verify_record(e.rec))
                except Exception as exc:  # noqa: BLE001
                    verdicts.append(exc)
        for e, v in zip(group, verdicts):
            if isinstance(v, Exception):
                e.add("W116", f"the {name} verifier could not check this record ({type(v).__name__}: {v})")
            elif v.reason == "unparseable":
                e.add("W116", f"the {name} verifier could not read this record ({v.evidence.get('error', '')})")
            elif not v.ok:
                detail = json.dumps(v.evidence, ensure_ascii=False)[:300]
                e.add("E014", f"the {name} verifier says {v.reason}: {detail}")


def lint_files(
    files: list[str], eval_sets: list[str] | None = None, verify: bool = True
) -> tuple[list[Entry], list[Diagnostic]]:
    """(an `Entry` per record, diagnostics of the lines that are no record: E001, E002). `verify`: ask each
    record's world (E014, W115, W116); the other checks always run."""
    entries, diags = [], []
    for name in files:
        got, bad = _read(Path(name))
        entries += got
        diags += bad
    for e in entries:
        _check_fields(e)
    good = [e for e in entries if not any(d.code == "E003" for d in e.diags)]
    _check_duplicates(good)
    paths = [Path(p) for p in eval_sets] if eval_sets else default_eval_sets()
    if paths:
        index = EvalIndex(paths)
        for e in good:
            for key in TEXT_FIELDS:
                if isinstance(e.rec.get(key), str) and (hit := index.overlap(e.rec[key])):
                    e.add("E013", f"key '{key}' {hit}")
                    break
    if verify:
        _verify([e for e in good if not any(d.code in ("E010", "E005", "E006") for d in e.diags)])
    return entries, diags


def write_fixes(entries: list[Entry], out: str | Path, overwrite: bool = False) -> tuple[int, int]:
    """Write the rework directory `out`, atomically, and return (records in fixed.jsonl, in quarantine.jsonl):
    - fixed.jsonl: EVERY record left without errors after fixing, in input order (`Entry.fixed_record`:
      unchanged records as read, changed ones with `parent` = their original id), the records to keep;
    - quarantine.jsonl: the records with an error no fix resolves (`Entry.quarantine_record`: each with
      `rework` = {"reasons", "original_id", "source": file:line});
    - MANIFEST.json (kind "rework", with both counts), last.
    Lines that are no record (E001, E002) are in neither. An existing `out` is replaced only with
    `overwrite`, and only if it is one this wrote (a manifest listing every file in it); the inputs are
    never touched."""
    fixed = [e.fixed_record() for e in entries if not e.quarantined]
    quarantined = [e.quarantine_record() for e in entries if e.quarantined]
    with atomic_dir(out, overwrite=overwrite) as staging:
        write_jsonl_atomic(staging / "fixed.jsonl", fixed)
        write_jsonl_atomic(staging / "quarantine.jsonl", quarantined)
        write_manifest(staging, {"kind": "rework", "fixed": len(fixed), "quarantined": len(quarantined)})
    return len(fixed), len(quarantined)


def lint_main(
    files: list[str],
    fix: str | None = None,
    eval_sets: list[str] | None = None,
    verify: bool = True,
    overwrite: bool = False,
) -> int:
    """Print diagnostics and a summary; the exit status (0 clean, 1 errors remain; UserError -> 2)."""
    if fix:
        check_output(fix, overwrite=overwrite, directory=True, kind="rework")  # before the work, not after
    entries, diags = lint_files(files, eval_sets, verify)
    for e in entries:
        diags += e.diags
    for d in sorted(diags, key=lambda d: _sort_key(d.where)):
        print(d, file=sys.stdout)
    errors = sum(d.error for d in diags)
    warnings = len(diags) - errors
    line = f"{len(entries)} records in {len(files)} file(s): {errors} error(s), {warnings} warning(s)"
    if fix:
        n_fixed, n_quarantined = write_fixes(entries, fix, overwrite)
        unreadable = sum(1 for d in diags if d.code in ("E001", "E002"))
        print(
            f"{line}; wrote {n_fixed} records and quarantined {n_quarantined} in {fix}"
            + (f" ({unreadable} unreadable line(s) skipped)" if unreadable else "")
        )
        return 0
    print(line)
    return 1 if errors else 0


def _sort_key(where: str):
    path, _, line = where.rpartition(":")
    return (path, int(line) if line.isdigit() else 0)

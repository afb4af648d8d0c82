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

`--fix DIR` writes, atomically, DIR/fixed.jsonl (every record without errors after fixing: text
normalized to NFC, id recomputed; a changed record gets `parent` = its original id) and
DIR/quarantine.jsonl (the records with errors that cannot be fixed, each with `rework`: the reasons,
the original id and file:line), then DIR/MANIFEST.json. Inputs are never modified.

Evaluation sets: by default the BLiMP, HumanEval and WikiText-2 files found under $TOUCHSTONE_EVAL_DATA,
or else ../shared/data next to the repository; `--eval-set PATH` (file or folder; repeatable)
replaces the defaults. Not guaranteed: paraphrases of evaluation items are not caught, only exact
sentences (after normalizing case, spacing and punctuation) and shared runs of 13 words.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

from touchstone.errors import UserError
from touchstone.records import CONTENT_FIELDS, content_id, record_type, schema_errors

MAX_FIELD = 20_000
NEAR_DUP = 0.9
NGRAM = 13
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


# ------------------------------------------------------------------------------------ evaluation sets
def _normalize(text: str) -> str:
    """Case, spacing and punctuation folded, so trivially reformatted copies still match."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.findall(r"\w+", text))


def _ngrams(norm: str) -> set[int]:
    words = norm.split()
    return {hash(" ".join(words[i:i + NGRAM])) for i in range(len(words) - NGRAM + 1)}


def _pieces(text: str) -> list[str]:
    """Lines and sentences of a text, normalized: the units compared with evaluation sentences."""
    out = []
    for line in text.splitlines():
        for sent in re.split(r"(?<=[.!?])\s+", line):
            norm = _normalize(sent)
            if norm.count(" ") >= 2:  # three words or more
                out.append(norm)
    return out


def default_eval_sets() -> list[Path]:
    from touchstone.files import shared_data

    root = os.environ.get("TOUCHSTONE_EVAL_DATA")
    base = Path(root) if root else shared_data()
    found = [base / "blimp", base / "humaneval", base / "wikitext2" / "raw", base / "wikitext2" / "tokens"]
    return [p for p in found if p.exists()]


class EvalIndex:
    """Normalized evaluation sentences and the hashes of their 13-word runs."""

    def __init__(self, paths: list[Path]):
        self.sentences: set[str] = set()
        self.ngrams: set[int] = set()
        self.names: list[str] = [str(p) for p in paths]
        for path in paths:
            if not path.exists():
                raise UserError(f"{path}: no such evaluation set")
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                         and not p.name.lower().startswith("readme"))
            for f in files:
                for text, prose in _eval_texts(f):
                    if prose:  # code lines ("return total") are too common to match one by one
                        self.sentences.update(_pieces(text))
                    self.ngrams |= _ngrams(_normalize(text))

    def overlap(self, text: str) -> str | None:
        """A short description of the first overlap, or None."""
        for piece in _pieces(text):
            if piece in self.sentences:
                return f"contains the evaluation sentence {piece[:60]!r}"
            if self.ngrams and not _ngrams(piece).isdisjoint(self.ngrams):
                return f"shares a {NGRAM}-word run with an evaluation set near {piece[:60]!r}"
        if self.ngrams and not _ngrams(_normalize(text)).isdisjoint(self.ngrams):
            return f"shares a {NGRAM}-word run with an evaluation set"
        return None


def _eval_texts(path: Path):
    """The texts of one evaluation file: JSONL string fields that look like data, or text lines.

    Strict: a binary or undecodable file, a malformed JSON line, or a file with nothing to match is a
    UserError, since skipping it would quietly leave the records unchecked against that set."""
    from touchstone.files import read_jsonl, read_text

    name = path.name[:-3] if path.suffix == ".gz" else path.name
    found = 0
    if name.endswith(".jsonl") or name.endswith(".json"):
        for lineno, obj in read_jsonl(path):
            texts = [(obj[key], key not in ("prompt", "canonical_solution"))
                     for key in ("sentence_good", "sentence_bad", "text", "statement", "prompt", "canonical_solution",
                                 "a", "b") if isinstance(obj.get(key), str)]
            if not texts:
                raise UserError(f"{path}:{lineno}: evaluation record with none of the keys sentence_good, "
                                "sentence_bad, text, statement, prompt, canonical_solution, a, b")
            found += len(texts)
            yield from texts
    else:
        for line in read_text(path, "evaluation text file").splitlines():
            if line.strip():
                found += 1
                yield line, True
    if not found:
        raise UserError(f"{path}: an empty evaluation set")



# ---------------------------------------------------------------------------------------------- lint
class _Entry:
    def __init__(self, where: str, rec: dict):
        self.where, self.rec = where, rec
        self.diags: list[Diagnostic] = []
        self.original_id = rec.get("id")
        self.fixed = False  # the record was changed by a fix

    def add(self, code: str, message: str):
        self.diags.append(Diagnostic(self.where, code, message))

    @property
    def quarantined(self) -> bool:
        return any(d.error and d.code != "E004" for d in self.diags)


def _binary(path: Path) -> bool:
    """NUL bytes near the start: no JSONL file has them (JSON escapes them as \\u0000)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            return b"\0" in f.read(8192)
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def _read(path: Path) -> tuple[list[_Entry], list[Diagnostic]]:
    """Records of one file; bad lines become diagnostics; an unreadable file is a UserError."""
    entries, diags = [], []
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if _binary(path):
        raise UserError(f"{path}: a binary file, not JSONL records")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
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
                entries.append(_Entry(where, obj))
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    return entries, diags


def _check_fields(e: _Entry) -> None:
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


def _check_duplicates(entries: list[_Entry]) -> None:
    from datasketch import MinHash, MinHashLSH

    first: dict[str, _Entry] = {}
    by_content: dict[str, list[_Entry]] = defaultdict(list)
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
        m.update_batch(w.encode("utf-8") for w in set(_normalize(text).split()))
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
    return rec[rec["label"]] if "a" in rec else rec["label"]


def _verify(entries: list[_Entry]) -> None:
    from touchstone.worlds import WORLDS, get_world

    groups: dict[str, list[_Entry]] = defaultdict(list)
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


def lint_files(files: list[str], eval_sets: list[str] | None = None, verify: bool = True) -> tuple[list, list]:
    """(entries, diagnostics of unreadable lines). Each entry has .where, .rec (fixed in place), .diags."""
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


def write_fixes(entries: list, out: str | Path, overwrite: bool = False) -> tuple[int, int]:
    """Write DIR/fixed.jsonl and DIR/quarantine.jsonl atomically; returns (fixed, quarantined) counts.
    An existing DIR is replaced only with `overwrite`, and only if it is one this wrote (a manifest
    listing every file in it); the inputs are never touched."""
    from touchstone.files import atomic_dir, write_jsonl_atomic, write_manifest

    fixed, quarantined = [], []
    for e in entries:
        original = e.original_id
        if e.quarantined:
            reasons = [f"{d.code}: {d.message}" for d in e.diags if d.error]
            quarantined.append({**e.rec, "rework": {"reasons": reasons, "original_id": original, "source": e.where}})
        elif e.fixed:
            fixed.append({**e.rec, "parent": original})
        else:
            fixed.append(e.rec)
    with atomic_dir(out, overwrite=overwrite) as staging:
        write_jsonl_atomic(staging / "fixed.jsonl", fixed)
        write_jsonl_atomic(staging / "quarantine.jsonl", quarantined)
        write_manifest(staging, {"kind": "rework", "fixed": len(fixed), "quarantined": len(quarantined)})
    return len(fixed), len(quarantined)


def lint_main(files: list[str], fix: str | None = None, eval_sets: list[str] | None = None,
              verify: bool = True, overwrite: bool = False) -> int:
    """Print diagnostics and a summary; the exit status (0 clean, 1 errors remain; UserError -> 2)."""
    if fix:
        from touchstone.files import check_output

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
        print(f"{line}; wrote {n_fixed} records and quarantined {n_quarantined} in {fix}"
              + (f" ({unreadable} unreadable line(s) skipped)" if unreadable else ""))
        return 0
    print(line)
    return 1 if errors else 0


def _sort_key(where: str):
    path, _, line = where.rpartition(":")
    return (path, int(line) if line.isdigit() else 0)

"""The evaluation harness: one model, a list of task specs, one results JSON with provenance.

    touchstone eval models/gen-0003 --task minimal-pairs:../shared/data/blimp/data suite:numbers --json eval.json

Task specs:
  minimal-pairs:PATH  BLiMP-style `sentence_good`/`sentence_bad` (file or folder, .gz read): the summed
                      log-probability of each sentence, good must beat bad. Scored as lm-evaluation-harness
                      scores BLiMP: the context is the tokenizer's BOS token (EOS if it has none) and the
                      continuation is " " + sentence (its default target delimiter). Pairs whose two
                      sentences are identical are skipped and counted. Overall, per-file (paradigm) and
                      per-phenomenon (`linguistics_term`) accuracy. `limit` applies per file.
  pairs:PATH          pair records through the judge: accuracy, precision/recall/F1 per label and macro.
  claims:PATH         claim records or CSV/JSONL with statement,label through the judge: the same metrics.
  perplexity:PATH     perplexity and bits per byte of a text file (see touchstone.generate.perplexity).
  bleu:PATH           JSONL with prompt,reference: greedy continuation of the prompt, corpus BLEU (sacrebleu).
  suite:NAME          a world's held-out suite (touchstone.synth.heldout_suite) through the judge, versioned
                      by the world's version; also `suite:facts-untaught`, facts no training record teaches.

Claims (in claims:, pairs: and suite: files) are read from the judge's <|true|>/<|false|> answer, or, with
`contrast` K > 0, set against K mutants of themselves where their world can mutate without knowing the
truth (code): see `touchstone.judge.Judge.claims`. Results then count `claims_by_contrast`.

Guaranteed: every spec and path is checked before the model loads (a bad one is a one-line UserError);
accuracy comes with a 95% Wilson interval (touchstone.metrics); the results carry provenance (task
versions: a world's version or the sha256 of the task files; the sha256 of the weights; the git commit;
the settings). Minimal pairs are scored by touchstone.likelihood: with bf16 (on by default only where
bf16 is fast: a GPU or a CPU with AMX/AVX512-BF16) by a bf16 copy of the model, near-ties rescored in
fp32, so the verdicts are the fp32 ones unless bf16 moves a pair by more than `likelihood.NEAR_TIE`.
Suites are built in this process (their worlds fan verification out themselves). `aevaluate` is the same
call for asyncio code.

Under a launcher (`torchrun --nproc-per-node N -m touchstone eval ...`, or `accelerate launch`) every
process loads the model and scores its share of each task's batches (`touchstone.distributed.Shards`);
the scores are gathered on every process and the metrics computed from all of them, so the numbers are
those of one process: each batch is the one a single process builds. Suites are built once, by rank 0,
and sent to the others; rank 0 alone writes the results and the report.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import defaultdict
from pathlib import Path

from touchstone import __version__
from touchstone.distributed import ONE_PROCESS, Shards, broadcast_object, launched, process_group
from touchstone.errors import UserError
from touchstone.files import check_output, read_jsonl, read_text, sha256_file, write_json_atomic
from touchstone.generate import WEIGHTS, load_model, perplexity_of, sample
from touchstone.judge import Judge
from touchstone.likelihood import NEAR_TIE, score_minimal_pairs
from touchstone.metrics import classification, wilson
from touchstone.records import is_pair, jsonl_files, read_claims, read_minimal_pairs, read_pairs
from touchstone.report import progress_bar, report_files, write_report
from touchstone.synth import EXTRA_SUITES, heldout_suite
from touchstone.train.common import default_bf16, default_device, git_commit
from touchstone.worlds import WORLDS, get_world

KINDS = ("minimal-pairs", "pairs", "claims", "perplexity", "bleu", "suite")


# --------------------------------------------------------------------------------------------- tasks
def parse_spec(spec: str) -> tuple[str, str]:
    """(kind, argument) of a task spec; a malformed spec or a missing path is a UserError."""
    kind, sep, arg = spec.partition(":")
    if not sep or not arg or kind not in KINDS:
        raise UserError(f"task spec '{spec}': expected KIND:PATH or suite:WORLD, KIND one of {', '.join(KINDS)}")
    if kind == "suite":
        if arg not in WORLDS and arg not in EXTRA_SUITES:
            raise UserError(f"task spec '{spec}': unknown suite '{arg}' (known: {', '.join([*WORLDS, *EXTRA_SUITES])})")
    elif kind in ("perplexity", "bleu"):
        if not Path(arg).is_file():
            raise UserError(f"task spec '{spec}': {arg}: no such file")
    else:
        jsonl_files(arg)  # a file, or a folder with .jsonl(.gz) files
    return kind, arg


def _files(kind: str, arg: str) -> list[Path]:
    return [Path(arg)] if kind in ("perplexity", "bleu") or Path(arg).is_file() else jsonl_files(arg)


def _minimal_pairs(model, tokenizer, arg, batch_size, limit, bf16, shards: Shards) -> dict:
    items, skipped = [], 0
    for f in jsonl_files(arg):
        stem = f.name.split(".")[0]
        for k, rec in enumerate(read_minimal_pairs(f)):
            if limit is not None and k >= limit:
                break
            if rec["sentence_good"] == rec["sentence_bad"]:
                skipped += 1  # an upstream quirk (BLiMP has 7): no sentence can beat itself
                continue
            items.append((stem, rec.get("linguistics_term"), rec))
    if not items:
        raise UserError(f"{arg}: no minimal pairs to score")
    ok = score_minimal_pairs(model, tokenizer, [r for _, _, r in items], batch_size, bf16, progress=True, shards=shards)
    groups: dict[str, dict] = {"per_file": defaultdict(list), "per_term": defaultdict(list)}
    for (stem, term, _), v in zip(items, ok):
        groups["per_file"][stem].append(v)
        if term:
            groups["per_term"][term].append(v)
    correct = sum(ok)
    result = {
        "accuracy": correct / len(ok),
        "ci95": wilson(correct, len(ok)),
        "n": len(ok),
        "correct": correct,
        "skipped_identical": skipped,
    }
    for name, g in groups.items():
        if g:
            result[name] = {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(g.items())}
    return result


def claim_contrast(k: int):
    """A `contrast` for `Judge.claims`: each claim record against k mutants made by its own world
    (`World.contrast`), seeded by the record's statement so every run asks the same questions. Records of
    no known world, or of a world that cannot mutate without the truth, get none (read directly)."""
    worlds: dict = {}

    def contrast(record: dict) -> list[dict]:
        name = record.get("world")
        if name not in WORLDS:
            return []
        if name not in worlds:
            worlds[name] = get_world(name)
        seed = int.from_bytes(hashlib.sha256(record["statement"].encode()).digest()[:8], "big")
        return worlds[name].contrast(record, random.Random(seed), k)

    return contrast


def judge_records(judge, records: list[dict], contrast: int = 0, progress: bool = True) -> dict:
    """Judge a mixed list of pair and claim records: overall accuracy, the metrics of each form (pairs,
    claims) and the accuracy of each record kind. `contrast`: claims against that many mutants of
    themselves where their world can make them (`claim_contrast`); 0 reads every claim directly."""
    verdicts = judge.records(records, progress=progress, contrast=claim_contrast(contrast) if contrast else None)
    gold = [str(r["label"]).lower() for r in records]
    pred = [str(v["choice"]).lower() for v in verdicts]
    overall = classification(gold, pred, [])
    result: dict = {k: overall[k] for k in ("accuracy", "ci95", "n", "correct")}
    if contrast:
        result["claims_by_contrast"] = sum(1 for v in verdicts if v.get("method") == "contrast")
    for form, labels in (("pairs", ["a", "b"]), ("claims", ["true", "false"])):
        idx = [i for i, r in enumerate(records) if is_pair(r) == (form == "pairs")]
        if idx:
            result[form] = classification([gold[i] for i in idx], [pred[i] for i in idx], labels)
    # Per record kind (a world's question type, e.g. numbers' "sum" or "larger"): an overall figure near
    # chance can hide one kind learned and another not. A kind that also names its item, as code's
    # "fibonacci:off_by_one" does, is grouped by the part after the last colon (the mutation).
    by_kind: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.get("kind"):
            by_kind.setdefault(str(r["kind"]).rsplit(":", 1)[-1], []).append(i)
    if by_kind:
        result["per_kind"] = {}
        for kind, idx in sorted(by_kind.items()):
            m = classification([gold[i] for i in idx], [pred[i] for i in idx], [])
            result["per_kind"][kind] = {k: m[k] for k in ("accuracy", "ci95", "n", "correct")}
    return result


def _read_records(kind: str, arg: str, limit) -> list[dict]:
    reader = read_pairs if kind == "pairs" else read_claims
    out = [r for f in _files(kind, arg) for r in reader(f)]
    return out[:limit] if limit is not None else out


def _bleu(model, tokenizer, arg, limit, shards: Shards) -> dict:
    import sacrebleu

    rows = []
    for lineno, obj in read_jsonl(arg):
        for key in ("prompt", "reference"):
            if not isinstance(obj.get(key), str):
                raise UserError(f"{arg}:{lineno}: missing key '{key}'")
        rows.append(obj)
    rows = rows[:limit] if limit is not None else rows
    bar = progress_bar(len(rows), "generate", True)

    def continue_prompt(batch: list[dict]) -> list[str]:
        r = batch[0]
        budget = int(r.get("max_new_tokens") or 2 * len(tokenizer(r["reference"])["input_ids"]) + 8)
        text = sample(model, tokenizer, r["prompt"], max_new_tokens=budget, temperature=0.0, n=1)[0].strip()
        bar.update()
        # A one-line reference is compared with the first line: a small model rarely stops by itself.
        return [text.split("\n")[0] if "\n" not in r["reference"].strip() else text]

    hyps = [h for (h,) in shards.map(continue_prompt, [[r] for r in rows])]  # one prompt a batch: greedy, unpadded
    bar.close()
    bleu = sacrebleu.corpus_bleu(hyps, [[r["reference"] for r in rows]])
    return {"accuracy": None, "bleu": bleu.score, "n": len(rows), "signature": str(bleu.format(signature=True))}


def _build_suites(names: list[str]) -> dict[str, tuple[int, list[dict]]]:
    """Held-out suites by world name, built in this process. Not in a process pool: the wing and code
    worlds start pools of their own, and a pool inside a pool worker deadlocks."""
    return {n: heldout_suite(n) for n in names}


# ------------------------------------------------------------------------------------------ evaluate
def weights_sha256(model_dir: str | Path) -> str | None:
    for name in WEIGHTS:
        if (Path(model_dir) / name).is_file():
            return sha256_file(Path(model_dir) / name)
    return None


def _task_version(kind: str, arg: str, suite_versions: dict) -> str:
    if kind == "suite":
        return str(suite_versions[arg])
    return "sha256:" + hashlib.sha256("".join(sha256_file(f) for f in _files(kind, arg)).encode()).hexdigest()[:16]


def evaluate(
    model_dir: str | Path,
    specs: list[str],
    json_out: str | Path | None = None,
    report_dir: str | Path | None = None,
    batch_size: int = 64,
    limit: int | None = None,
    bf16: bool | None = None,
    compile: bool = False,
    contrast: int = 0,
    overwrite: bool = False,
) -> dict:
    """Run every task spec on the model; write the results JSON and a report if asked; return the results.
    `contrast` > 0 judges claims against that many mutants of themselves where their world can make them
    (see `Judge.claims`); the default reads every claim directly. Under a launcher every process calls
    this and gets the same results (see the module docstring)."""
    settings = dict(batch_size=batch_size, limit=limit, bf16=bf16, compile=compile, contrast=contrast)
    if not launched():
        return _evaluate(model_dir, specs, json_out, report_dir, overwrite, ONE_PROCESS, **settings)
    with process_group(default_device() == "cuda", "eval") as (rank, world):
        return _evaluate(model_dir, specs, json_out, report_dir, overwrite, Shards(rank, world), **settings)


def _evaluate(
    model_dir, specs, json_out, report_dir, overwrite, shards: Shards, *, batch_size, limit, bf16, compile, contrast
):
    import torch

    parsed = [(spec, *parse_spec(spec)) for spec in specs]  # all specs checked before the model loads
    if len({s for s, _, _ in parsed}) != len(parsed):
        raise UserError("eval: the same task spec is given twice")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise UserError("eval: batch size and limit must be at least 1")
    if contrast < 0:
        raise UserError(f"eval: --contrast must be 0 or more, got {contrast}")
    if json_out is not None or report_dir is not None:  # before any work: an unwritable output fails now
        check_outputs(json_out, report_dir, overwrite)
    # Every file a task reads is read now, so that a bad one is reported before the model loads.
    loaded = {}
    for spec, kind, arg in parsed:
        if kind in ("pairs", "claims"):
            loaded[spec] = _read_records(kind, arg, limit)
            if not loaded[spec]:
                raise UserError(f"{arg}: no records")
        elif kind == "perplexity":
            loaded[spec] = read_text(arg)
            if not loaded[spec].strip():
                raise UserError(f"{arg}: the text is empty")
    names = [arg for _, kind, arg in parsed if kind == "suite"]
    # Rank 0 builds the suites (verification included) and sends them: the others would only repeat it.
    suites = _build_suites(names) if shards.rank == 0 else None
    if shards.world > 1:
        suites = broadcast_object(suites)
    model, tokenizer = load_model(model_dir)
    device = default_device()
    model.to(device)
    bf16 = default_bf16(device) if bf16 is None else bf16
    if compile:
        model.base_model.forward = torch.compile(model.base_model.forward, dynamic=True)
    judge = None
    tasks = {}
    for spec, kind, arg in parsed:
        if kind in ("pairs", "claims", "suite") and judge is None:
            judge = Judge(model, tokenizer, batch_size, shards)
        if kind == "minimal-pairs":
            tasks[spec] = _minimal_pairs(model, tokenizer, arg, batch_size, limit, bf16, shards)
        elif kind in ("pairs", "claims"):
            tasks[spec] = judge_records(judge, loaded[spec], contrast)
        elif kind == "suite":
            records = suites[arg][1][:limit] if limit is not None else suites[arg][1]
            tasks[spec] = judge_records(judge, records, contrast)
        elif kind == "perplexity":
            r = perplexity_of(model, tokenizer, loaded[spec], batch_size=max(1, batch_size // 8), shards=shards)
            tasks[spec] = {"accuracy": None, "n": r["tokens"], **r}
        else:
            tasks[spec] = _bleu(model, tokenizer, arg, limit, shards)
    results = {
        "model": str(model_dir),
        "tasks": tasks,
        "provenance": {
            "task_versions": {
                spec: _task_version(kind, arg, {k: v[0] for k, v in suites.items()}) for spec, kind, arg in parsed
            },
            "model_sha256": weights_sha256(model_dir),
            "git_commit": git_commit(),
            "config": {
                "batch_size": batch_size,
                "limit": limit,
                "bf16": bf16,
                "compile": compile,
                "device": device,
                "processes": shards.world,
                "claim_contrast": contrast,
                "near_tie_nats": NEAR_TIE,
                "minimal_pairs_prefix": "BOS (else EOS), continuation ' ' + sentence",
            },
            "touchstone_version": __version__,
        },
    }
    if json_out is not None and shards.rank == 0:
        write_json_atomic(json_out, results)
    if (report_dir is not None or json_out is not None) and shards.rank == 0:
        write_report(results, *report_place(json_out, report_dir))
    return results


def report_place(json_out, report_dir) -> tuple[Path, str]:
    """(directory, name) of the Markdown report: `report_dir`, else beside the JSON, named after it."""
    where = Path(report_dir) if report_dir is not None else Path(json_out).parent
    return where, Path(json_out).stem if json_out is not None else "eval"


def check_outputs(json_out, report_dir, overwrite: bool = False) -> None:
    """Refuse, before evaluating, a results path or report files that exist (unless `overwrite`) or
    cannot be written (see `files.check_output`)."""
    if json_out is not None:
        check_output(json_out, overwrite=overwrite)
    where, name = report_place(json_out, report_dir)
    if where.exists() and not where.is_dir():
        raise UserError(f"{where}: is a file, not a directory; choose another --report directory")
    for fname in report_files(name):
        check_output(where / fname, overwrite=overwrite)


async def aevaluate(model_dir, specs, **kwargs) -> dict:
    """`evaluate` for asyncio callers: runs in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(evaluate, model_dir, specs, **kwargs)

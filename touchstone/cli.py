"""The `touchstone` command: a thin layer over library functions.

Each command parses its flags and calls one function; heavy imports (torch, transformers,
aerosandbox) happen inside that function, so `touchstone --help` answers instantly. A `UserError`
anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from touchstone.errors import UserError


def _overrides(args: argparse.Namespace, *names: str) -> dict:
    """The settings among `names` that the user gave on the command line."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


# ---------------------------------------------------------------------------------------------- data
def _data_prepare(args):
    from touchstone.data import PrepareConfig, prepare

    cfg = PrepareConfig.load(args.config, _overrides(args, "text_field", "lowercase", "min_chars", "max_chars",
                                                      "near_dup_threshold", "seed", "tokenizer", "workers",
                                                      "vocab_size"))
    summary = prepare(args.sources, args.out, cfg)
    print(json.dumps(summary, indent=2))


def _tokenizer_train(args):
    from touchstone.tokenizer import train_tokenizer

    path = train_tokenizer(args.data, args.out, vocab_size=args.vocab_size)
    print(f"tokenizer saved to {path}")


# ----------------------------------------------------------------------------------------- modelling
def _pretrain(args):
    from touchstone.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig.load(args.config, _overrides(
        args, "size", "minutes", "tokens", "lr", "batch_size", "grad_accum", "seq_len", "warmup", "eval_every",
        "seed", "compile", "bf16", "device", "tensorboard", "init_from", "tokenizer"))
    out = pretrain(args.data, args.out, cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every process returns here; one line is enough
        print(f"model saved to {out}")


def _finetune(args):
    from touchstone.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig.load(args.config, _overrides(args, "epochs", "lr", "batch_size", "objective", "lm_weight",
                                                       "seed", "text_data", "minutes"))
    report = finetune(args.model, args.data, args.out, cfg)
    print(json.dumps(report, indent=2))


def _study(args):
    from touchstone.finetune import FinetuneConfig
    from touchstone.study import study

    cfg = FinetuneConfig.load(args.config, _overrides(args, "epochs", "lr", "batch_size", "objective", "lm_weight",
                                                       "seed", "text_data", "minutes"))
    study(args.model, args.data, args.out, cfg, every=args.every,
          worlds=args.worlds.split(",") if args.worlds else None, limit=args.limit)


def _generate(args):
    from touchstone.generate import generate

    for text in generate(args.model, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, n=args.n, seed=args.seed):
        print(args.prompt + text)


def _perplexity(args):
    from touchstone.generate import perplexity

    print(json.dumps(perplexity(args.model, args.file), indent=2))


# -------------------------------------------------------------------------------------- judge & eval
def _judge(args):
    from touchstone.judge import Judge

    judge = Judge.load(args.model)
    if args.statement is not None:
        result = judge.claim(args.statement)
    else:
        if args.a is None or args.b is None:
            raise UserError("judge: give --a and --b (two versions) or --statement")
        result = judge.pair(args.a, args.b, prompt=args.prompt or "", kind=args.kind)
    print(json.dumps(result, indent=2))


def _eval(args):
    from touchstone.evaluate import evaluate

    results = evaluate(args.model, args.task, json_out=args.json, report_dir=args.report, batch_size=args.batch_size,
                       limit=args.limit, contrast=args.contrast)
    print(json.dumps({name: {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
                      for name, r in results["tasks"].items()}, indent=2))


def _debate(args):
    from touchstone.debate import debate

    print(debate(args.model, args.a, args.b, plot=args.plot))


# --------------------------------------------------------------------------------------------- worlds
def _verify(args):
    from touchstone.synth import verify_file

    for verdict in verify_file(args.world, args.file):
        print(json.dumps(verdict, ensure_ascii=False))


def _synth(args):
    from touchstone.synth import synth

    world = args.world
    if args.source is not None:
        if args.world != "language":
            raise UserError(f"synth: --source is for the language world only, not '{args.world}'")
        from touchstone.worlds import get_world

        world = get_world("language", source=args.source)
    n = synth(world, n=args.n, out=args.out, seed=args.seed, form=args.form)
    print(f"wrote {n} verified records to {args.out}")


def _lint(args):
    from touchstone.lint import lint_main

    return lint_main(args.files, fix=args.fix, eval_sets=args.eval_set, verify=not args.no_verify)


# ----------------------------------------------------------------------------------------------- loop
def _run(args):
    from touchstone.loop import LoopConfig, run

    given = _overrides(args, "size", "pretrain_minutes", "seed")
    # None: the workspace's own saved settings (or the defaults, for a new workspace).
    cfg = LoopConfig.load(args.config, given) if (args.config or given) else None
    hours = None if args.forever else args.hours
    generations = None if (args.forever or args.hours) else (args.generations or 5)
    run(args.workspace, cfg, generations=generations, hours=hours)


def _status(args):
    from touchstone.loop import status

    print(status(args.workspace))


def _history(args):
    from touchstone.loop import history

    print(history(args.workspace))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="touchstone", description="A small language model that tells two versions "
                                "apart, checks claims with tools and retrains itself.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help):
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    ws_help = "workspace directory (default: ./workspace)"
    s = command("run", _run, "the main job: prepare, pretrain, then improve generation after generation")
    s.add_argument("--workspace", default="workspace", help=ws_help)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--generations", type=int, help="stop once the workspace has N finished generations (default 5; "
                   "a restarted run finishes what is left)")
    g.add_argument("--hours", type=float, help="stop after H hours")
    g.add_argument("--forever", action="store_true", help="run until interrupted")
    s.add_argument("--config", help="loop recipe YAML overlaying the defaults")
    s.add_argument("--size", choices=["nano", "micro", "small"], help="model size of generation 0")
    s.add_argument("--pretrain-minutes", type=float, help="pretraining budget of generation 0")
    s.add_argument("--seed", type=int)

    d = command("data", None, "data preparation")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    s = dsub.add_parser("prepare", help="ingest, normalize, filter, dedup, split and tokenize sources")
    s.set_defaults(func=_data_prepare)
    s.add_argument("sources", nargs="+", metavar="SRC",
                   help="folder of .txt/.md, .jsonl(.gz), .parquet, or hf:NAME[:CONFIG][@SPLIT] for a HF dataset")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--config", help="YAML overlaying the defaults")
    s.add_argument("--text-field", help="JSONL/Parquet/HF text field (default text; RefinedWeb's content is recognized)")
    s.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--min-chars", type=int)
    s.add_argument("--max-chars", type=int)
    s.add_argument("--near-dup-threshold", type=float, help="MinHash Jaccard threshold for near duplicates")
    s.add_argument("--tokenizer", help="tokenizer directory (default: train one on the train split)")
    s.add_argument("--vocab-size", type=int, help="vocabulary of the trained tokenizer (default 8192)")
    s.add_argument("--workers", type=int, help="processes for cleaning and filtering (default 1)")
    s.add_argument("--seed", type=int)

    t = command("tokenizer", None, "tokenizer training")
    tsub = t.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")
    s = tsub.add_parser("train", help="train a byte-level BPE tokenizer")
    s.set_defaults(func=_tokenizer_train)
    s.add_argument("data", help="prepared data directory, text file or folder")
    s.add_argument("--out", required=True)
    s.add_argument("--vocab-size", type=int, default=8192)

    s = command("pretrain", _pretrain, "pretrain a GPT-2 architecture model (default data: the embedded corpus)")
    s.add_argument("--data", help="prepared data directory (default: the embedded corpus, prepared on first use)")
    s.add_argument("--out", required=True)
    s.add_argument("--config", help="YAML overlaying the defaults")
    s.add_argument("--size", choices=["nano", "micro", "small"])
    s.add_argument("--minutes", type=float, help="time budget")
    s.add_argument("--tokens", type=int, help="token budget")
    s.add_argument("--lr", type=float)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--grad-accum", type=int)
    s.add_argument("--seq-len", type=int)
    s.add_argument("--warmup", type=int, help="warmup steps")
    s.add_argument("--eval-every", type=int, help="validate every N steps")
    s.add_argument("--seed", type=int)
    s.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when a GPU is visible")
    s.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--init-from", help="local HF causal-LM directory to continue from")
    s.add_argument("--tokenizer", help="tokenizer directory (default: the data's own)")
    s.add_argument("--resume", action="store_true", help="continue exactly from the last checkpoint in --out")

    s = command("finetune", _finetune, "teach a model to judge pairs and claims")
    s.add_argument("model")
    s.add_argument("--data", nargs="+", required=True, metavar="FILE", help="pair/claim JSONL files")
    s.add_argument("--out", required=True)
    s.add_argument("--config", help="YAML overlaying the defaults")
    s.add_argument("--epochs", type=float)
    s.add_argument("--lr", type=float)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--objective", help="answer | pairwise | mix")
    s.add_argument("--lm-weight", type=float, help="weight of the language-model loss kept during fine-tuning")
    s.add_argument("--text-data", help="prepared data directory for the language-model loss")
    s.add_argument("--seed", type=int)
    s.add_argument("--minutes", type=float, help="time budget: train until then (with --epochs too: whichever ends "
                                                 "first), the learning rate decaying with the clock")

    s = command("study", _study, "learning curves: fine-tune, scoring the held-out suites every N steps")
    s.add_argument("model")
    s.add_argument("--data", nargs="+", required=True, metavar="FILE", help="pair/claim JSONL files")
    s.add_argument("--out", required=True, help="folder for curve.json, curve.png and the final model")
    s.add_argument("--every", type=int, default=100, help="steps between points (default 100)")
    s.add_argument("--worlds", help="comma-separated suites to score (default: the worlds of the records)")
    s.add_argument("--limit", type=int, help="at most N records per suite")
    s.add_argument("--config", help="YAML overlaying the fine-tuning defaults")
    for flag, kind in (("--epochs", float), ("--lr", float), ("--batch-size", int), ("--lm-weight", float),
                       ("--seed", int), ("--minutes", float)):
        s.add_argument(flag, type=kind)
    s.add_argument("--objective", help="answer | pairwise | mix")
    s.add_argument("--text-data", help="prepared data directory for the language-model loss")

    s = command("generate", _generate, "sample text from a model")
    s.add_argument("model")
    s.add_argument("--prompt", required=True)
    s.add_argument("--max-new-tokens", type=int, default=100)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=50)
    s.add_argument("--top-p", type=float, default=0.95)
    s.add_argument("--n", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)

    s = command("perplexity", _perplexity, "perplexity and bits per byte of a model on a text file")
    s.add_argument("model")
    s.add_argument("file")

    s = command("judge", _judge, "which of two versions is correct or better; or is a statement true")
    s.add_argument("model")
    s.add_argument("--a")
    s.add_argument("--b")
    s.add_argument("--prompt")
    s.add_argument("--kind")
    s.add_argument("--statement")

    s = command("verify", _verify, "verify each item of a file with a world's tool (one JSON verdict per item)")
    s.add_argument("world")
    s.add_argument("file")

    s = command("synth", _synth, "write verified pair and claim records from a world")
    s.add_argument("world")
    s.add_argument("--n", type=int, default=100)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--source", help="language world: the corpus its sentences come from (a prepared data "
                                    "directory, folder or text file; default: the embedded corpus)")
    s.add_argument("--form", choices=("both", "pairs", "claims"), default="both",
                   help="which records to keep: pairs (two versions), claims (one statement), or both")

    s = command("lint", _lint, "the training-data compiler: check records, optionally --fix into a rework dir")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--fix", metavar="DIR", help="write corrected and quarantined records here")
    s.add_argument("--eval-set", action="append", default=[], metavar="PATH",
                   help="evaluation data to check overlap against (repeatable; default: the shared sets found)")
    s.add_argument("--no-verify", action="store_true", help="skip re-verification with the worlds' tools")

    s = command("eval", _eval, "evaluate a model on task specs (minimal-pairs:, pairs:, claims:, perplexity:, ...)")
    s.add_argument("model")
    s.add_argument("--task", nargs="+", required=True, metavar="SPEC")
    s.add_argument("--json", metavar="OUT")
    s.add_argument("--report", metavar="DIR", help="Markdown report and PNG plots (default: beside --json)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--limit", type=int, help="at most N items per task (for quick looks)")
    s.add_argument("--contrast", type=int, default=0, metavar="K",
                   help="judge claims against K mutants of themselves where their world can make them without "
                        "knowing the truth (code); 0 (default) reads every claim directly")

    s = command("debate", _debate, "argue a choice between two wing designs with the simulator's figures")
    s.add_argument("model")
    s.add_argument("a", help="design A (JSON)")
    s.add_argument("b", help="design B (JSON)")
    s.add_argument("--plot", help="PNG drawing of both wings")

    for name, func, help in (("status", _status, "where the loop stands"),
                             ("history", _history, "every generation's decision and scores")):
        s = command(name, func, help)
        s.add_argument("--workspace", default="workspace", help=ws_help)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"touchstone: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("touchstone: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

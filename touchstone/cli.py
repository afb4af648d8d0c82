"""The `touchstone` command: a thin layer over library functions.

Each command parses its flags and calls one function. The flags of a stage's settings are generated
from its config dataclass (`touchstone.config.add_arguments`): a setting's name, type, default, help and
allowed range are declared once, on its field. The library's modules import torch, transformers and
aerosandbox inside the functions that need them, so importing them all here keeps `touchstone --help`
instant. A `UserError` anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from touchstone.config import add_arguments, number_type, overrides_from_args
from touchstone.data.config import PrepareConfig
from touchstone.data.prepare import prepare
from touchstone.debate import debate
from touchstone.distributed import first_process
from touchstone.errors import Terminated, UserError
from touchstone.evaluate import evaluate
from touchstone.files import check_output
from touchstone.generate import generate, perplexity
from touchstone.judge import Judge
from touchstone.lint import lint_main
from touchstone.loop.command import add_command as add_loop_command
from touchstone.loop.config import LoopConfig
from touchstone.loop.history import history, status
from touchstone.loop.run import run
from touchstone.sandbox import choose_isolation
from touchstone.serve import ServeConfig, serve
from touchstone.synth import synth, verify_file
from touchstone.tokenizer import train_tokenizer
from touchstone.train.finetune import FinetuneConfig, finetune
from touchstone.train.pretrain import PretrainConfig, pretrain
from touchstone.train.study import study
from touchstone.worlds import WORLDS, get_world, world_class


class Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line naming the argument, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# The types of the flags that are a command's own rather than a config field.
positive_int = number_type(int, min=1)
nonneg_int = number_type(int, min=0)
positive_float = number_type(float, above=0)
nonneg_float = number_type(float, min=0)
fraction = number_type(float, above=0, max=1)


# ---------------------------------------------------------------------------------------------- data
def _data_prepare(args):
    cfg = PrepareConfig.load(args.config, overrides_from_args(args, PrepareConfig))
    summary = prepare(args.sources, args.out, cfg, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))


def _tokenizer_train(args):
    cfg = PrepareConfig.load(None, overrides_from_args(args, PrepareConfig))  # the one vocab_size setting
    path = train_tokenizer(args.data, args.out, vocab_size=cfg.vocab_size, overwrite=args.overwrite)
    print(f"tokenizer saved to {path}")


# ----------------------------------------------------------------------------------------- modelling
def _pretrain(args):
    cfg = PretrainConfig.load(args.config, overrides_from_args(args, PretrainConfig))
    out = pretrain(args.data, args.out, cfg, resume=args.resume, overwrite=args.overwrite)
    if first_process():  # under torchrun every process returns here; one line is enough
        print(f"model saved to {out}")


def _finetune(args):
    cfg = FinetuneConfig.load(args.config, overrides_from_args(args, FinetuneConfig))
    report = finetune(args.model, args.data, args.out, cfg, overwrite=args.overwrite)
    if first_process():  # under torchrun every rank returns rank 0's report; print it once
        print(json.dumps(report, indent=2))


def _study(args):
    cfg = FinetuneConfig.load(args.config, overrides_from_args(args, FinetuneConfig))
    study(
        args.model,
        args.data,
        args.out,
        cfg,
        every=args.every,
        worlds=args.worlds.split(",") if args.worlds else None,
        limit=args.limit,
        contrast=args.contrast,
    )


def _generate(args):
    sampling = dict(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p
    )
    for text in generate(args.model, args.prompt, n=args.n, seed=args.seed, **sampling):
        print(args.prompt + text)


def _perplexity(args):
    print(json.dumps(perplexity(args.model, args.file), indent=2))


# -------------------------------------------------------------------------------------- judge & eval
def _judge(args):
    # The arguments first: a mistake is reported before the model's load, not after.
    if args.statement is not None:
        if args.a is not None or args.b is not None:
            raise UserError("judge: give either --a and --b (two versions) or --statement, not both")
    elif args.a is None or args.b is None:
        raise UserError("judge: give --a and --b (two versions) or --statement")
    judge = Judge.load(args.model)
    if args.statement is not None:
        result = judge.claim(args.statement)
    else:
        result = judge.pair(args.a, args.b, prompt=args.prompt or "", kind=args.kind)
    print(json.dumps(result, indent=2))


def _eval(args):
    options = dict(batch_size=args.batch_size, limit=args.limit, contrast=args.contrast, overwrite=args.overwrite)
    results = evaluate(args.model, args.task, json_out=args.json, report_dir=args.report, **options)
    if not first_process():  # under torchrun every rank returns the same results; print them once
        return
    # The scalar figures of each task; the JSON file holds the rest.
    scalars = {
        name: {k: v for k, v in r.items() if not isinstance(v, (dict, list))} for name, r in results["tasks"].items()
    }
    print(json.dumps(scalars, indent=2))


def _debate(args):
    print(debate(args.model, args.a, args.b, plot=args.plot, overwrite=args.overwrite))


# --------------------------------------------------------------------------------------------- worlds
def _verify(args):
    for verdict in verify_file(args.world, args.file):
        print(json.dumps(verdict, ensure_ascii=False))


def _synth(args):
    check_output(args.out, overwrite=args.overwrite)  # before a language world reads its corpus
    world = args.world
    if args.source is not None:
        if not world_class(args.world).reads_corpus:
            readers = ", ".join(n for n in WORLDS if world_class(n).reads_corpus)
            raise UserError(f"synth: --source is for the worlds that read a corpus ({readers}), not '{args.world}'")
        world = get_world(args.world, corpus=args.source)
    n = synth(world, n=args.n, out=args.out, seed=args.seed, form=args.form, overwrite=args.overwrite)
    print(f"wrote {n} verified records to {args.out}")


def _lint(args):
    if args.overwrite and not args.fix:
        raise UserError("lint: --overwrite is for --fix DIR (lint never writes its inputs)")
    return lint_main(
        args.files, fix=args.fix, eval_sets=args.eval_set, verify=not args.no_verify, overwrite=args.overwrite
    )


# ----------------------------------------------------------------------------------------------- loop
def _run(args):
    given = overrides_from_args(args, LoopConfig)
    # None: the workspace's own saved settings (or the defaults, for a new workspace).
    cfg = LoopConfig.load(args.config, given) if (args.config or given) else None
    choose_isolation()  # a machine that cannot isolate untrusted code hears so now, not after pretraining
    hours = None if args.forever else args.hours
    generations = None if (args.forever or args.hours) else (5 if args.generations is None else args.generations)
    run(args.workspace, cfg, generations=generations, hours=hours)


def _status(args):
    print(status(args.workspace))


def _history(args):
    print(history(args.workspace))


def _serve(args):
    serve(ServeConfig(**overrides_from_args(args, ServeConfig)))


OVERWRITE_DIR = (
    "replace an existing output directory (only one Touchstone wrote: its MANIFEST.json lists every "
    "file in it); without this an existing one is an error"
)
OVERWRITE_FILE = "replace existing output files; without this an existing one is an error"
CONTRAST_HELP = (
    "judge claims through the pair skill, against K truth-blind contrasts of themselves where their world "
    "writes them (code: K mutants; number comparisons: the pair question the claim restates); 0 (default) "
    "reads every claim directly"
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="touchstone",
        description="A small language model that tells two versions "
        "apart, checks claims with tools and retrains itself.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help, parent=sub):
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    def output(s, help="output directory", overwrite=OVERWRITE_DIR):
        s.add_argument("--out", required=True, help=help)
        s.add_argument("--overwrite", action="store_true", help=overwrite)

    ws_help = "workspace directory (default: ./workspace)"
    world_help = f"one of: {', '.join(WORLDS)}"
    s = command("run", _run, "the main job: prepare, pretrain, then improve generation after generation")
    s.add_argument("--workspace", default="workspace", help=ws_help)
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--generations",
        type=positive_int,
        help="stop once the workspace has N finished generations (default 5; a restarted run finishes what is left)",
    )
    g.add_argument("--hours", type=positive_float, help="stop after H hours")
    g.add_argument("--forever", action="store_true", help="run until interrupted")
    s.add_argument(
        "--config",
        help="loop settings YAML overlaying the defaults (a new workspace only: an existing one keeps its own)",
    )
    add_arguments(s, LoopConfig)

    d = command("data", None, "data preparation")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    s = command("prepare", _data_prepare, "ingest, normalize, filter, dedup, split and tokenize sources", dsub)
    s.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help="folder of .txt/.md, .jsonl(.gz), .parquet, or hf:NAME[:CONFIG][@SPLIT] for a HF dataset",
    )
    output(s)
    s.add_argument("--config", help="YAML overlaying the defaults")
    add_arguments(s, PrepareConfig)

    t = command("tokenizer", None, "tokenizer training")
    tsub = t.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")
    s = command("train", _tokenizer_train, "train a byte-level BPE tokenizer", tsub)
    s.add_argument("data", help="prepared data directory, text file or folder")
    output(s)
    add_arguments(s, PrepareConfig, only=("vocab_size",))

    s = command("pretrain", _pretrain, "pretrain a GPT-2 architecture model (default data: the embedded corpus)")
    s.add_argument("--data", help="prepared data directory (default: the embedded corpus, prepared on first use)")
    output(s)
    s.add_argument("--config", help="YAML overlaying the defaults")
    s.add_argument("--resume", action="store_true", help="continue exactly from the last checkpoint in --out")
    add_arguments(s, PretrainConfig)

    s = command("finetune", _finetune, "teach a model to judge pairs and claims")
    s.add_argument("model")
    s.add_argument("--data", nargs="+", required=True, metavar="FILE", help="pair/claim JSONL files")
    output(s)
    s.add_argument("--config", help="YAML overlaying the defaults")
    add_arguments(s, FinetuneConfig)

    s = command("study", _study, "learning curves: fine-tune, scoring the held-out suites every N steps")
    s.add_argument("model")
    s.add_argument("--data", nargs="+", required=True, metavar="FILE", help="pair/claim JSONL files")
    s.add_argument("--out", required=True, help="folder for curve.json, curve.png and the final model")
    s.add_argument("--every", type=positive_int, default=100, help="steps between points (default 100)")
    s.add_argument("--worlds", help="comma-separated suites to score (default: the worlds of the records)")
    s.add_argument("--limit", type=positive_int, help="at most N records per suite")
    s.add_argument(
        "--contrast",
        type=nonneg_int,
        default=0,
        metavar="K",
        help="also score the claims through the pair skill, as eval --contrast K does (default 0: off)",
    )
    s.add_argument("--config", help="YAML overlaying the fine-tuning defaults")
    add_arguments(s, FinetuneConfig)

    s = command("generate", _generate, "sample text from a model")
    s.add_argument("model")
    s.add_argument("--prompt", required=True)
    s.add_argument("--max-new-tokens", type=positive_int, default=100)
    s.add_argument("--temperature", type=nonneg_float, default=0.8, help="0: greedy decoding")
    s.add_argument("--top-k", type=nonneg_int, default=50, help="0: no top-k cut")
    s.add_argument("--top-p", type=fraction, default=0.95)
    s.add_argument("--n", type=positive_int, default=1)
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
    s.add_argument("world", metavar="WORLD", help=world_help)
    s.add_argument("file")

    s = command("synth", _synth, "write verified pair and claim records from a world")
    s.add_argument("world", metavar="WORLD", help=world_help)
    s.add_argument("--n", type=positive_int, default=100)
    output(s, "output JSONL file (.gz allowed)", OVERWRITE_FILE)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--source",
        help="language world: the corpus its sentences come from (a prepared data "
        "directory, folder or text file; default: the embedded corpus)",
    )
    s.add_argument(
        "--form",
        choices=("both", "pairs", "claims"),
        default="both",
        help="which records to keep: pairs (two versions), claims (one statement), or both",
    )

    s = command("lint", _lint, "the training-data compiler: check records, optionally --fix into a rework dir")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--fix", metavar="DIR", help="write corrected and quarantined records here")
    s.add_argument("--overwrite", action="store_true", help=OVERWRITE_DIR)
    s.add_argument(
        "--eval-set",
        action="append",
        default=[],
        metavar="PATH",
        help="evaluation data to check overlap against (repeatable; default: the shared sets found)",
    )
    s.add_argument("--no-verify", action="store_true", help="skip re-verification with the worlds' tools")

    s = command("eval", _eval, "evaluate a model on task specs (minimal-pairs:, pairs:, claims:, perplexity:, ...)")
    s.add_argument("model")
    s.add_argument("--task", nargs="+", required=True, metavar="SPEC")
    s.add_argument("--json", metavar="OUT")
    s.add_argument("--report", metavar="DIR", help="Markdown report and PNG plots (default: beside --json)")
    s.add_argument("--overwrite", action="store_true", help=OVERWRITE_FILE)
    s.add_argument("--batch-size", type=positive_int, default=64)
    s.add_argument("--limit", type=positive_int, help="at most N items per task (for quick looks)")
    s.add_argument("--contrast", type=nonneg_int, default=0, metavar="K", help=CONTRAST_HELP)

    s = command("debate", _debate, "argue a choice between two wing designs with the simulator's figures")
    s.add_argument("model")
    s.add_argument("a", help="design A (JSON)")
    s.add_argument("b", help="design B (JSON)")
    s.add_argument("--plot", help="PNG drawing of both wings")
    s.add_argument("--overwrite", action="store_true", help=OVERWRITE_FILE)

    for name, func, help in (
        ("status", _status, "where the loop stands"),
        ("history", _history, "every generation's decision and scores"),
    ):
        s = command(name, func, help)
        s.add_argument("--workspace", default="workspace", help=ws_help)

    add_loop_command(sub)

    s = command("serve", _serve, "the web app and JSON API (/api/v1, docs at /docs): compare, debate, loop, models")
    add_arguments(s, ServeConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a malformed argument (one line already printed): the status
        return e.code if isinstance(e.code, int) else 0
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"touchstone: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("touchstone: interrupted", file=sys.stderr)
        return 130
    except Terminated as t:
        return 128 + t.signum
    except OSError as e:  # the environment, not a bug: a full disk, a path that vanished, a permission
        where = f"{e.filename}: " if e.filename else ""
        print(f"touchstone: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

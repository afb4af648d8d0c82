"""`data prepare` throughput (MB/s of input) and peak memory on the shared English corpus, against a
peer measured in the same run: a plain pass that reads the same files and tokenizes them with the same
tokenizer (`encode_batch`), i.e. the least any prepare must do.

    python benchmarks/bench_prepare.py [--data ../shared/data] [--workers 1 2]

Each measurement runs in its own process, so peak memory (ru_maxrss of the largest process: the
stage itself or one of its workers) is that stage's alone and includes the libraries it imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from touchstone.files import shared_data


def sources(root: Path) -> list[str]:
    return [
        str(root / "gutenberg"),
        str(root / "wikitext2" / "tokens" / "valid.txt"),
        str(root / "tinyshakespeare" / "input.txt"),
    ]


def child(kind: str, srcs: list[str], out: str, workers: int, tokenizer: str | None) -> dict:
    start = time.perf_counter()
    if kind == "prepare":
        from touchstone.data.config import PrepareConfig
        from touchstone.data.prepare import prepare

        summary = prepare(srcs, out, PrepareConfig(workers=workers, tokenizer=tokenizer))
        result = {
            "bytes": summary["counts"]["bytes_in"],
            "tokens": sum(v for k, v in summary["counts"].items() if k.startswith("tokens_")),
        }
    else:  # peer: read every file, tokenize in batches, nothing else
        from touchstone.data.sources import source_files
        from touchstone.tokenizer import load_tokenizer

        backend = load_tokenizer(tokenizer).backend_tokenizer
        nbytes = ntokens = 0
        for src in srcs:
            for path in source_files(src):
                text = path.read_text(encoding="utf-8")
                nbytes += len(text.encode("utf-8"))
                paras = text.split("\n\n")
                ntokens += sum(len(e.ids) for e in backend.encode_batch(paras, add_special_tokens=False))
        result = {"bytes": nbytes, "tokens": ntokens}
    result["seconds"] = time.perf_counter() - start
    # The largest single process (this one, or a worker it started).
    result["peak_mb"] = (
        max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    )
    return result


def measure(kind, srcs, out, workers=1, tokenizer=None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--out",
        out,
        "--workers",
        str(workers),
        *(["--tokenizer", tokenizer] if tokenizer else []),
        "--",
        *srcs,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{kind} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(shared_data()))
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--child")
    p.add_argument("--out")
    p.add_argument("--tokenizer")
    p.add_argument("srcs", nargs="*")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.srcs, args.out, args.workers[0], args.tokenizer)))
        return

    srcs = sources(Path(args.data))
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for workers in args.workers:
            r = measure("prepare", srcs, f"{tmp}/prep-{workers}", workers)
            rows.append((f"data prepare (workers={workers}, trains tokenizer)", r))
        tok = f"{tmp}/prep-{args.workers[0]}/tokenizer"
        r = measure("prepare", srcs, f"{tmp}/prep-given", args.workers[0], tok)
        rows.append((f"data prepare (workers={args.workers[0]}, --tokenizer given)", r))
        peer = measure("peer", srcs, "", tokenizer=tok)
        rows.append(("peer: read + encode_batch only", peer))
    peer_mbs = peer["bytes"] / 1e6 / peer["seconds"]
    print(f"input: {rows[0][1]['bytes'] / 1e6:.1f} MB ({', '.join(Path(s).name for s in srcs)})")
    print(f"{'stage':55s} {'MB/s':>7s} {'seconds':>8s} {'peak MB':>8s} {'vs peer':>8s}")
    for name, r in rows:
        mbs = r["bytes"] / 1e6 / r["seconds"]
        print(f"{name:55s} {mbs:7.2f} {r['seconds']:8.1f} {r['peak_mb']:8.0f} {mbs / peer_mbs:7.2f}x")


if __name__ == "__main__":
    main()

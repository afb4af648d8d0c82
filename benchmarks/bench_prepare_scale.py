"""Peak memory and documents/s of `data prepare`, plain path against datatrove's local executor, on synthetic
corpora of 5x and 20x the shared English corpus.

    nice -n 10 python benchmarks/bench_prepare_scale.py [--scales 5 20] [--workers 2]

The corpus: the English corpus's chunks (as data.cleaned cuts them), then each further copy with light
random edits (3% of the words of every chunk replaced by another word of the same chunk), one JSONL file
per copy. Both paths get the same tokenizer, trained once on the original corpus, so that what is
measured is reading, cleaning, filtering, both dedups, splitting and tokenizing (BPE training is the same
code in both). datatrove runs one task per file (a shard of constant size), `--workers` at a time; the
plain path fans cleaning out over as many processes.

Memory is sampled every 0.1 s over the process and all its children: the largest single process, and all
of them together.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def english() -> list[str]:
    from touchstone.files import shared_data

    d = shared_data()
    return [str(d / "gutenberg"), str(d / "wikitext2" / "tokens" / "valid.txt"), str(d / "tinyshakespeare")]


def build_corpus(root: Path, scale: int) -> list[str]:
    from touchstone.data.clean import cleaned
    from touchstone.data.config import PrepareConfig
    from touchstone.data.sources import read_source

    cfg = PrepareConfig()
    chunks = [t for src in english() for t, _ in cleaned(read_source(src, cfg), cfg)]
    rng = random.Random(scale)
    root.mkdir(parents=True)
    for copy in range(scale):
        with open(root / f"copy-{copy:03d}.jsonl", "w", encoding="utf-8") as f:
            for text in chunks:
                if copy:
                    words = text.split(" ")
                    for i in rng.sample(range(len(words)), k=len(words) * 3 // 100):
                        words[i] = rng.choice(words)
                    text = " ".join(words)
                f.write(json.dumps({"text": text}) + "\n")
    return [str(root)]


def measure(args: list[str]) -> dict:
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "touchstone", "data", "prepare", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    top = psutil.Process(proc.pid)
    largest = total = 0
    while proc.poll() is None:
        try:
            rss = [p.memory_info().rss for p in [top, *top.children(recursive=True)]]
        except psutil.Error:  # a process ended between listing and reading
            continue
        largest, total = max(largest, *rss), max(total, sum(rss))
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    out = proc.stdout.read()
    if proc.returncode:
        sys.exit(f"prepare {' '.join(args)} failed ({proc.returncode})")
    summary = json.loads(out)
    return {
        "documents": summary["counts"]["documents"],
        "seconds": seconds,
        "largest_mb": largest / 2**20,
        "total_mb": total / 2**20,
        "dropped": summary["dropped"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scales", type=int, nargs="+", default=[5, 20])
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    from touchstone.tokenizer import train_from_texts

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from touchstone.data.clean import cleaned
        from touchstone.data.config import PrepareConfig
        from touchstone.data.sources import read_source

        cfg = PrepareConfig()
        texts = (t for src in english() for t, _ in cleaned(read_source(src, cfg), cfg))
        tokenizer = train_from_texts(texts, tmp / "tokenizer", 8192)
        rows = []
        for scale in args.scales:
            srcs = build_corpus(tmp / f"corpus-{scale}", scale)
            common = [*srcs, "--tokenizer", str(tokenizer), "--workers", str(args.workers)]
            plain = measure([*common, "--out", str(tmp / f"plain-{scale}")])
            dt = measure([*common, "--out", str(tmp / f"dt-{scale}"), "--executor", "local", "--tasks", str(scale)])
            rows.append((scale, plain, dt))
            for path in (tmp / f"plain-{scale}", tmp / f"dt-{scale}", tmp / f"corpus-{scale}"):
                shutil.rmtree(path)
        print(
            f"{'corpus':>7} {'path':>9} {'documents':>10} {'seconds':>8} {'docs/s':>7} {'largest MB':>11} "
            f"{'all MB':>7}  near_duplicate"
        )
        for scale, plain, dt in rows:
            for name, r in (("plain", plain), ("datatrove", dt)):
                print(
                    f"{scale:>6}x {name:>9} {r['documents']:>10} {r['seconds']:>8.1f} "
                    f"{r['documents'] / r['seconds']:>7.0f} {r['largest_mb']:>11.0f} {r['total_mb']:>7.0f}  "
                    f"{r['dropped'].get('near_duplicate', 0)}"
                )
            print(
                f"{'':>7} {'ratio':>9} {'':>10} {dt['seconds'] / plain['seconds']:>8.2f} {'':>7} "
                f"{dt['largest_mb'] / plain['largest_mb']:>11.2f} {dt['total_mb'] / plain['total_mb']:>7.2f}"
            )


if __name__ == "__main__":
    main()

"""The judge against a bag-of-bigrams classifier trained on the same records: how much of what the loop's
data teaches is there to learn from surface cues alone, and how much of it the judge has learned.

    python benchmarks/bench_judge.py --workspace runs/ws                 # its champion
    python benchmarks/bench_judge.py --workspace runs/ws --model runs/ws/models/gen-0003

Both sides learn from the records the loop synthesized and verified (WORKSPACE/data/new, drawn from the
worlds' training slice) and are scored on each world's held-out suite, which neither ever saw.
The baseline is a logistic regression on hashed word unigrams and bigrams (scikit-learn), one per world
and record kind: a claim is the bag of its statement; a pair is bag(a) - bag(b), trained in both orders
so it cannot learn a position. The judge's suite scores come from the model's eval.json (the loop's
cache), computed if missing. Prints per world and kind: baseline accuracy, judge accuracy, n; then the
overall ratio judge / baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def baseline_accuracy(train: list[dict], test: list[dict]) -> float | None:
    """Held-out accuracy of a bag-of-bigrams logistic regression (None when a side has no records)."""
    import numpy as np
    from scipy.sparse import vstack
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    if not train or not test:
        return None
    bag = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), token_pattern=r"\S+", alternate_sign=False, norm=None)

    def features(records):
        return vstack(
            [
                bag.transform([r["a"]]) - bag.transform([r["b"]]) if "a" in r else bag.transform([r["statement"]])
                for r in records
            ]
        )

    def labels(records):
        return np.array([int(r["label"] in ("a", True)) for r in records])

    if "a" in train[0]:  # both orders
        train = train + [{**r, "a": r["b"], "b": r["a"], "label": "b" if r["label"] == "a" else "a"} for r in train]
    if len(set(labels(train))) < 2:
        return None
    clf = LogisticRegression(max_iter=2000).fit(features(train), labels(train))
    return float((clf.predict(features(test)) == labels(test)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True, help="a loop workspace with records in data/new")
    ap.add_argument("--model", help="model directory (default: the workspace's champion)")
    args = ap.parse_args()

    from touchstone.loop.recipe import WORLD_NAMES
    from touchstone.loop.suites import suite_scores
    from touchstone.loop.workspace import Workspace
    from touchstone.synth import heldout_suite
    from touchstone.train.finetune import read_records

    ws = Workspace(args.workspace)
    model = Path(args.model) if args.model else ws.models / ws.champion()
    train = read_records([str(ws.new)])
    worlds = ws.worlds([w for w in WORLD_NAMES if any(r.get("world") == w for r in train)])
    judged = suite_scores(model, worlds)
    print(f"model {model}; {len(train)} training records from {ws.new}")
    print(f"{'world':9s} {'kind':5s} {'baseline':>8s} {'judge':>6s} {'n':>4s}")
    hits = {"baseline": 0.0, "judge": 0.0}
    n_all = 0
    for name, world in worlds.items():
        _, suite = heldout_suite(world)
        correct = judged[name]["correct"]
        for kind in ("pair", "claim"):
            idx = [i for i, r in enumerate(suite) if ("a" in r) == (kind == "pair")]
            if not idx:
                continue
            base = baseline_accuracy(
                [r for r in train if r.get("world") == name and ("a" in r) == (kind == "pair")], [suite[i] for i in idx]
            )
            judge = sum(correct[i] for i in idx) / len(idx)
            base_shown = f"{base:8.3f}" if base is not None else f"{'-':>8s}"
            print(f"{name:9s} {kind:5s} {base_shown} {judge:6.3f} {len(idx):4d}")
            if base is not None:
                hits["baseline"] += base * len(idx)
                hits["judge"] += judge * len(idx)
                n_all += len(idx)
    if n_all:
        b, j = hits["baseline"] / n_all, hits["judge"] / n_all
        print(f"overall (n {n_all}): baseline {b:.3f}  judge {j:.3f}  ratio judge/baseline {j / b:.2f}")


if __name__ == "__main__":
    main()

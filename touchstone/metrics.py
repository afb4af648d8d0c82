"""Metrics of a classification: accuracy with its 95% Wilson interval, precision/recall/F1 per label."""

from __future__ import annotations

import math


def wilson(correct: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval for a proportion (sound at 0%, 100% and small n, unlike the normal one)."""
    if n == 0:
        return [0.0, 1.0]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def classification(gold: list, pred: list, labels: list) -> dict:
    """Accuracy with its interval, and precision/recall/F1 per label and macro-averaged."""
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, pred))
    per_label = {}
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        n_pred, n_gold = sum(p == lab for p in pred), sum(g == lab for g in gold)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[str(lab)] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    macro = {
        f"macro_{m}": sum(v[m] for v in per_label.values()) / max(1, len(labels)) for m in ("precision", "recall", "f1")
    }
    return {
        "accuracy": correct / n if n else None,
        "ci95": wilson(correct, n),
        "n": n,
        "correct": correct,
        **macro,
        "per_label": per_label,
    }

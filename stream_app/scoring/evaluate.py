"""``badbuzz model eval``: classification metrics of the shipped ONNX model on a labeled file.

Binary datasets (negative/positive only) are scored on the negative-vs-positive decision:
the predicted label is the larger of p(negative) and p(positive).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..sources import read_rows
from .sentiment import SentimentModel

LABEL_ALIASES = {"0": "negative", "4": "positive", "2": "neutral", "neg": "negative", "pos": "positive",
                 "neu": "neutral", "-1": "negative", "1": "positive"}


def classification_report(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, Any]:
    idx = {label: i for i, label in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[idx[t], idx[p]] += 1
    per_class = {}
    for label, i in idx.items():
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i, :].sum() if cm[i, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                            "support": int(cm[i, :].sum())}
    present = [c for c in labels if per_class[c]["support"]]
    return {
        "n": len(y_true),
        "accuracy": float(np.trace(cm) / max(1, cm.sum())),
        "macro_recall": float(np.mean([per_class[c]["recall"] for c in present])),
        "macro_f1": float(np.mean([per_class[c]["f1"] for c in present])),
        "per_class": per_class,
        "labels": labels,
        "confusion_matrix": cm.tolist(),
    }


def evaluate_model(model: SentimentModel, texts: list[str], gold: list[str]) -> dict[str, Any]:
    probs = model.probs(texts)
    binary = set(gold) <= {"negative", "positive"}
    if binary:
        neg, pos = model.labels.index("negative"), model.labels.index("positive")
        pred = ["negative" if row[neg] >= row[pos] else "positive" for row in probs]
        labels = ["negative", "positive"]
    else:
        pred = [model.labels[int(i)] for i in probs.argmax(axis=1)]
        labels = list(model.labels)
    report = classification_report(gold, pred, labels)
    report["binary"] = binary
    return report


def format_report(r: dict[str, Any]) -> str:
    lines = [f"n={r['n']}  accuracy={r['accuracy']:.4f}  macro_recall={r['macro_recall']:.4f}  "
             f"macro_f1={r['macro_f1']:.4f}" + ("  (binary: negative vs positive)" if r["binary"] else "")]
    lines.append(f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for label, m in r["per_class"].items():
        lines.append(f"{label:<10}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>10}")
    lines.append("confusion matrix (rows = gold, columns = predicted): " + " ".join(r["labels"]))
    for label, row in zip(r["labels"], r["confusion_matrix"], strict=True):
        lines.append(f"{label:<10}" + "".join(f"{v:>10}" for v in row))
    return "\n".join(lines)


def main(model_dir: Path, data: Path, *, text_column: str = "text", label_column: str = "label",
         limit: int | None = None, json_out: Path | None = None) -> int:
    texts, gold = [], []
    for row in read_rows(data):
        label = str(row.get(label_column, "")).strip().lower()
        label = LABEL_ALIASES.get(label, label)
        if label not in {"negative", "neutral", "positive"} or not row.get(text_column):
            continue
        texts.append(str(row[text_column]))
        gold.append(label)
        if limit and len(texts) >= limit:
            break
    if not texts:
        print(f"badbuzz: error: no labeled rows in {data} (columns {text_column!r}, {label_column!r})",
              file=sys.stderr)
        return 2
    report = evaluate_model(SentimentModel(model_dir), texts, gold)
    print(format_report(report))
    if json_out:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def vocabulary_report(model_dir: Path, files: list[Path], *, text_column: str = "text",
                      limit: int = 3000) -> list[str]:
    """Per file, the share of words the model's vocabulary lacks (alerting/health.py's measure): what the
    ``vocabulary`` health rule's threshold is set against."""
    from itertools import islice

    from ..alerting.health import unknown_words

    vocabulary = SentimentModel(model_dir).vocabulary
    out = [f"{model_dir.name}: {len(vocabulary)} whole words in the vocabulary"]
    for path in files:
        words = unknown = 0
        for row in islice(read_rows(path), limit):
            w, u = unknown_words(str(row.get(text_column) or ""), vocabulary)
            words, unknown = words + w, unknown + u
        out.append(f"  {path.name}: {unknown / words if words else 0:.1%} of {words} words unknown")
    return out

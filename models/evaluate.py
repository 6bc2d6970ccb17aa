"""Evaluate ONNX model variants (fp32 and int8 flavours) on held-out data and time them.

    python models/evaluate.py --models fp32=.../model.fp32.onnx int8=.../q/int8.onnx --out metrics.json

Datasets: TweetEval val (model selection), the airline held-out split (20% by hash of tweet_id,
never trained on), and the last 5,000 rows of a fixed Sentiment140 order (training takes a prefix; binary:
negative vs positive). Also reports int8-vs-fp32 agreement and tweets/s with batch scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import LABELS, base_encoder_dir, encoder_prefix, eval_sets, sentiment140_heldout

from stream_app.scoring.evaluate import classification_report
from stream_app.scoring.sentiment import SentimentModel


def load_variant(onnx: Path, threads: int) -> SentimentModel:
    """Wrap a bare .onnx file in a temporary model folder so the serving runtime loads it."""
    tmp = Path(tempfile.mkdtemp(prefix="bbeval-"))
    os.symlink(onnx.resolve(), tmp / "model.onnx")
    (tmp / "tokenizer.json").write_bytes((base_encoder_dir() / "tokenizer.json").read_bytes())
    (tmp / "config.json").write_text(
        json.dumps({"name": onnx.stem, "version": "eval", "labels": list(LABELS), "max_length": 64,
                    "text_prefix": encoder_prefix(base_encoder_dir())})  # e5: "query: ", applied by the runtime
    )
    return SentimentModel(tmp, threads=threads, cache_size=0)


def report(probs: np.ndarray, gold: list[int], binary: bool) -> dict:
    if binary:
        pred = np.where(probs[:, 0] >= probs[:, 2], 0, 2)
        labels = ["negative", "positive"]
    else:
        pred = probs.argmax(1)
        labels = list(LABELS)
    return classification_report([LABELS[g] for g in gold], [LABELS[p] for p in pred], labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", required=True, help="name=path.onnx ...")
    ap.add_argument("--reference", default="fp32", help="variant the others are compared with")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    sets = eval_sets()
    sets["sentiment140_heldout"] = sentiment140_heldout()
    results: dict[str, dict] = {}
    probs_by: dict[str, dict[str, np.ndarray]] = {}
    for spec in args.models:
        name, path = spec.split("=", 1)
        model = load_variant(Path(path), args.threads)
        res = {"file_mb": round(Path(path).stat().st_size / 1e6, 1)}
        probs_by[name] = {}
        for ds, rows in sets.items():
            texts = [t for t, _ in rows]
            start = time.perf_counter()
            probs = model.probs_normalized(texts)
            elapsed = time.perf_counter() - start
            probs_by[name][ds] = probs
            r = report(probs, [y for _, y in rows], binary=ds.startswith("sentiment140"))
            res[ds] = {k: r[k] for k in ("n", "accuracy", "macro_recall", "macro_f1")} | {
                "per_class": r["per_class"],
                "confusion_matrix": r["confusion_matrix"],
            }
            if ds == "tweeteval_val":
                res["tweets_per_s"] = round(len(texts) / elapsed, 1)
        results[name] = res
        print(
            name,
            json.dumps(
                {
                    k: (v if not isinstance(v, dict) else {m: v[m] for m in ("accuracy", "macro_recall")})
                    for k, v in res.items()
                }
            ),
            flush=True,
        )
    ref = probs_by.get(args.reference)
    if ref:
        for name in results:
            if name == args.reference:
                continue
            agree = {ds: float((probs_by[name][ds].argmax(1) == ref[ds].argmax(1)).mean()) for ds in ref}
            results[name]["agreement_with_" + args.reference] = agree
            print(name, "agreement", json.dumps(agree), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

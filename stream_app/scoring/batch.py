"""Offline enrichment of a file (``badbuzz score``): the agent's parse + enrich path, batched."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import orjson

from ..parsing import InvalidTweet, parse_tweet
from ..sources import is_jsonl, read_rows, to_tweet

CSV_COLUMNS = ["sentiment", "sentiment_score", "p_negative", "p_neutral", "p_positive", "is_claim", "urgency",
               "topics", "incident", "confidence", "truncated", "error"]


def csv_fields(enriched: dict[str, Any] | None, error: str = "") -> dict[str, Any]:
    if enriched is None:
        return dict.fromkeys(CSV_COLUMNS, "") | {"error": error}
    s = enriched["sentiment"]
    return {
        "sentiment": s["label"],
        "sentiment_score": s["score"],
        "p_negative": s["probs"]["negative"],
        "p_neutral": s["probs"]["neutral"],
        "p_positive": s["probs"]["positive"],
        "is_claim": str(enriched["is_claim"]).lower(),
        "urgency": enriched["urgency"],
        "topics": ";".join(enriched["topics"]),
        "incident": enriched["incident"],
        "confidence": enriched["confidence"],
        "truncated": str(enriched.get("truncated", False)).lower(),
        "error": "",
    }


def score_file(enricher: Any, src: Path, dst: Path, *, text_column: str = "text", batch: int = 2048,
               progress: bool = True, max_text: int = 4000, brand: str | None = None,
               brand_column: str | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    started = time.perf_counter()
    rows = list(read_rows(src))
    results: list[tuple[dict[str, Any] | None, str]] = [(None, "")] * len(rows)
    pending: list[tuple[int, dict[str, Any]]] = []
    invalid = 0
    reasons: dict[str, int] = {}
    bar = tqdm(total=len(rows), unit="tweet", disable=not progress, desc="score")

    def flush() -> None:
        for i, out in zip((p[0] for p in pending), enricher.enrich([p[1] for p in pending]), strict=True):
            results[i] = (out, "")
        bar.update(len(pending))
        pending.clear()

    for i, row in enumerate(rows):
        try:
            tweet = to_tweet(row, i, src, text_column=text_column, brand=brand, brand_column=brand_column)
            pending.append((i, parse_tweet(orjson.dumps(tweet), max_text=max_text)))
        except InvalidTweet as exc:
            results[i] = (None, f"{exc.code}: {exc.message}")
            invalid += 1
            reasons[exc.code] = reasons.get(exc.code, 0) + 1
            bar.update(1)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    bar.close()

    dst.parent.mkdir(parents=True, exist_ok=True)
    if is_jsonl(dst):
        with open(dst, "wb") as fh:
            for (out, err), row in zip(results, rows, strict=True):
                fh.write(orjson.dumps(out if out is not None else {"input": row, "error": err}) + b"\n")
    else:
        in_cols = list(rows[0].keys()) if rows and not is_jsonl(src) else [text_column]
        with open(dst, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=in_cols + [c for c in CSV_COLUMNS if c not in in_cols],
                                    extrasaction="ignore")
            writer.writeheader()
            for (out, err), row in zip(results, rows, strict=True):
                flat = {c: row.get(c, "") for c in in_cols}
                flat = {k: (orjson.dumps(v).decode() if isinstance(v, dict | list) else v) for k, v in flat.items()}
                writer.writerow(flat | csv_fields(out, err))
    seconds = time.perf_counter() - started  # reading, parsing, scoring, rules and writing
    n = len(rows) - invalid
    return {"rows": len(rows), "enriched": n, "invalid": invalid, "invalid_reasons": reasons, "seconds": seconds,
            "tweets_per_s": n / seconds if seconds else 0.0}

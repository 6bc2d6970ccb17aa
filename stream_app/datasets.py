"""Readers for the labeled tweet datasets in ``../shared/data`` (never copied into the repo).

Held-out splits are chosen by a stable hash of the row id, so training, rule writing and
evaluation all agree on which rows are untouched without storing any row.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

LABELS = ("negative", "neutral", "positive")


def data_dir() -> Path:
    """Shared data folder: ``$BADBUZZ_DATA_DIR`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("BADBUZZ_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def read_csv(path: str | Path) -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def is_heldout(key: str, fraction: float = 0.2, salt: str = "badbuzz-v1") -> bool:
    """Deterministic split: True for the held-out ``fraction`` of keys."""
    digest = hashlib.sha1(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def airline_rows(split: str) -> list[dict[str, str]]:
    """Airline sentiment rows, ``split`` in {"train", "heldout", "all"}."""
    rows = list(read_csv(data_dir() / "airline_train.csv"))
    if split == "all":
        return rows
    want = split == "heldout"
    return [r for r in rows if is_heldout(r["tweet_id"]) == want]

"""Reading tweet files (CSV or JSONL) for ``produce`` and ``score``."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


def stable_id(path: str | Path, row: int, text: str) -> str:
    """Id for rows that have none: same file, row and text give the same id on every run."""
    digest = hashlib.sha1(f"{Path(path).name}:{row}:{text}".encode()).hexdigest()
    return f"gen-{digest[:16]}"


def is_jsonl(path: str | Path) -> bool:
    return Path(path).suffix.lower() in {".jsonl", ".ndjson", ".json"}


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a CSV (header row) or JSON-lines file, as dicts."""
    if is_jsonl(path):
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    yield orjson.loads(line)
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)


def to_tweet(row: dict[str, Any], index: int, path: str | Path, *, text_column: str = "text",
             id_column: str | None = None, time_column: str | None = None, brand: str | None = None,
             brand_column: str | None = None) -> dict[str, Any]:
    """Map a file row onto the input tweet schema (unknown columns are dropped)."""
    if isinstance(row.get("data"), dict):  # already a Twitter v2 envelope
        return row
    text = row.get(text_column)
    out: dict[str, Any] = {k: row[k] for k in ("lang", "brand", "author", "is_retweet", "retweet_of", "in_reply_to")
                           if row.get(k) not in (None, "")}
    out["text"] = text
    tweet_id = row.get(id_column or "id") or row.get("tweet_id")
    out["id"] = str(tweet_id) if tweet_id not in (None, "") else stable_id(path, index, str(text))
    created = row.get(time_column or "created_at")
    if created not in (None, ""):
        out["created_at"] = created
    if brand_column and row.get(brand_column) not in (None, ""):
        out["brand"] = brand_slug(str(row[brand_column]))
    if brand:
        out["brand"] = brand
    return out


def brand_slug(name: str) -> str:
    """``"US Airways"`` -> ``"usairways"``: the handle form the rule tables' brands.toml uses."""
    return re.sub(r"[^a-z0-9_]", "", name.lower().lstrip("@"))

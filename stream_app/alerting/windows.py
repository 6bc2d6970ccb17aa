"""Event-time helpers of the alert engine: tumbling bucket arithmetic, timestamps, tweet samples.

A *bucket* is an integer index: ``floor(epoch_seconds / bucket_seconds)``; the last K buckets ending at
``b`` are ``b-K+1 .. b``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..kpi import incident_of

DEFAULT_BUCKET_SECONDS = 60
MAX_SAMPLES_PER_BUCKET = 5
MAX_SAMPLE_TEXT = 280


def to_epoch(ts: float | int | str | datetime) -> float:
    """Epoch seconds from epoch seconds, an aware/naive(UTC) datetime or an ISO-8601 string (``Z`` allowed)."""
    if isinstance(ts, bool):
        raise TypeError("timestamp must not be a boolean")
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts.timestamp()
    raise TypeError(f"unsupported timestamp type {type(ts).__name__}")


def iso(epoch: float) -> str:
    """``2024-05-01T10:05:00Z`` (second precision, UTC)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Buckets:
    """Tumbling bucket arithmetic for one bucket size."""

    seconds: int = DEFAULT_BUCKET_SECONDS

    def __post_init__(self) -> None:
        if not isinstance(self.seconds, int) or self.seconds <= 0:
            raise ValueError(f"bucket size must be a positive integer of seconds, got {self.seconds!r}")

    def bucket_of(self, ts: float | int | str | datetime) -> int:
        return math.floor(to_epoch(ts) / self.seconds)

    def start(self, bucket: int) -> float:
        return float(bucket * self.seconds)

    def end(self, bucket: int) -> float:
        """Exclusive end of ``bucket``."""
        return float((bucket + 1) * self.seconds)

    def span(self, last_bucket: int, count: int) -> tuple[str, str]:
        """ISO (start, end) of the ``count`` buckets ending with ``last_bucket`` (end exclusive)."""
        return iso(self.start(last_bucket - count + 1)), iso(self.end(last_bucket))

    def per_minutes(self, minutes: float) -> int:
        """Number of buckets covering ``minutes`` (at least 1)."""
        return max(1, math.ceil(minutes * 60 / self.seconds))


def bucket_of(ts: float | int | str | datetime, bucket_seconds: int = DEFAULT_BUCKET_SECONDS) -> int:
    return Buckets(bucket_seconds).bucket_of(ts)


def sample_from_tweet(tweet: Mapping[str, Any]) -> dict[str, Any]:
    """A compact sample from an enriched tweet, with a ``score`` saying how telling it is.

    score = P(negative) * log10(10 + followers), plus a bonus for claims / critical urgency, so the
    most negative tweets from the widest-reaching authors come first.
    """
    author = tweet.get("author") or {}
    handle = author.get("handle") or author.get("id")
    followers = author.get("followers") or 0
    sentiment = tweet.get("sentiment") or {}
    probs = sentiment.get("probs") or {}
    p_neg = probs.get("negative")
    if p_neg is None:
        p_neg = float(sentiment.get("score", 1.0)) if sentiment.get("label") == "negative" else 0.0
    score = float(p_neg) * math.log10(10 + max(0, int(followers)))
    if tweet.get("is_claim"):
        score += 0.5
    if tweet.get("urgency") == "critical":
        score += 1.0
    tweet_id = tweet.get("id")
    link = tweet.get("link")
    if not link and tweet_id is not None:
        link = f"https://twitter.com/{handle or 'i'}/status/{tweet_id}"
    incident = incident_of(tweet)
    return {
        "id": None if tweet_id is None else str(tweet_id),
        "text": str(tweet.get("text", ""))[:MAX_SAMPLE_TEXT],
        "author": None if handle is None else str(handle),
        "link": link,
        "score": round(score, 4),
        "incidents": [incident] if incident else [],
        "negative": sentiment.get("label") == "negative",
    }


def top_samples(samples: Iterable[Mapping[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` highest-scoring samples, one per tweet id, ties broken by id for determinism."""
    best: dict[Any, Mapping[str, Any]] = {}
    for s in samples:
        key = s.get("id") or s.get("text")
        if key not in best or s.get("score", 0) > best[key].get("score", 0):
            best[key] = s
    ranked = sorted(best.values(), key=lambda s: (-float(s.get("score", 0)), str(s.get("id"))))
    return [dict(s) for s in ranked[:k]]

"""Event-time tumbling buckets, per-brand window counts and an EWMA baseline.

Everything here is pure and serializable to plain dicts so it can be stored as values of Faust
tables keyed by :func:`table_key` (``"brand|bucket"``). A *bucket* is an integer index:
``floor(epoch_seconds / bucket_seconds)``; the last K buckets ending at ``b`` are ``b-K+1 .. b``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


def table_key(brand: str, bucket: int) -> str:
    """Key of a per-brand bucket in a Faust table: ``"brand|bucket"`` (brands never contain ``|``)."""
    return f"{brand}|{bucket}"


def parse_table_key(key: str) -> tuple[str, int]:
    brand, _, bucket = key.rpartition("|")
    return brand, int(bucket)


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
    incident = tweet.get("incident")
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


@dataclass(slots=True)
class WindowCounts:
    """Counts for one brand in one bucket (or summed over several)."""

    tweets: int = 0
    negative: int = 0
    claims: int = 0
    incidents: dict[str, int] = field(default_factory=dict)
    misclassified: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)  # best few, see sample_from_tweet
    # Highest source offset counted, per "topic/partition": a replay after a crash (offsets not yet
    # committed, counts already in the changelog) is recognised and not counted twice.
    applied: dict[str, int] = field(default_factory=dict)

    def already_applied(self, source: str, offset: int) -> bool:
        return offset <= self.applied.get(source, -1)

    def mark_applied(self, source: str, offset: int) -> None:
        self.applied[source] = max(offset, self.applied.get(source, -1))

    def add_tweet(self, tweet: Mapping[str, Any], *, keep_samples: int = MAX_SAMPLES_PER_BUCKET) -> WindowCounts:
        """Count one enriched tweet (in place; returns self so a table value can be rebound)."""
        self.tweets += 1
        negative = (tweet.get("sentiment") or {}).get("label") == "negative"
        if negative:
            self.negative += 1
        if tweet.get("is_claim"):
            self.claims += 1
        incident = tweet.get("incident")
        if incident:
            self.incidents[incident] = self.incidents.get(incident, 0) + 1
        if keep_samples and (negative or incident or tweet.get("is_claim")):
            self.samples = top_samples([*self.samples, sample_from_tweet(tweet)], keep_samples)
        return self

    def add_misclassification(self, n: int = 1) -> WindowCounts:
        self.misclassified += n
        return self

    def __add__(self, other: WindowCounts) -> WindowCounts:
        if not isinstance(other, WindowCounts):
            return NotImplemented
        incidents = dict(self.incidents)
        for k, v in other.incidents.items():
            incidents[k] = incidents.get(k, 0) + v
        return WindowCounts(
            tweets=self.tweets + other.tweets,
            negative=self.negative + other.negative,
            claims=self.claims + other.claims,
            incidents=incidents,
            misclassified=self.misclassified + other.misclassified,
            samples=[*self.samples, *other.samples],
        )

    @classmethod
    def sum(cls, parts: Iterable[WindowCounts | None]) -> WindowCounts:
        total = cls()
        for p in parts:
            if p is not None:
                total = total + p
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "tweets": self.tweets,
            "negative": self.negative,
            "claims": self.claims,
            "incidents": dict(self.incidents),
            "misclassified": self.misclassified,
            "samples": [dict(s) for s in self.samples],
            "applied": dict(self.applied),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | WindowCounts | None) -> WindowCounts:
        if data is None:
            return cls()
        if isinstance(data, WindowCounts):
            return data
        return cls(
            tweets=int(data.get("tweets", 0)),
            negative=int(data.get("negative", 0)),
            claims=int(data.get("claims", 0)),
            incidents={str(k): int(v) for k, v in (data.get("incidents") or {}).items()},
            misclassified=int(data.get("misclassified", 0)),
            samples=[dict(s) for s in data.get("samples") or []],
            applied={str(k): int(v) for k, v in (data.get("applied") or {}).items()},
        )


def window_sum(history: Mapping[int, WindowCounts | Mapping[str, Any]], last_bucket: int, count: int) -> WindowCounts:
    """Sum of the ``count`` buckets ending with ``last_bucket`` (missing buckets count as zero)."""
    return WindowCounts.sum(
        WindowCounts.from_dict(history.get(b)) for b in range(last_bucket - count + 1, last_bucket + 1)
    )


@dataclass(slots=True)
class Ewma:
    """Exponentially weighted mean and variance (West's incremental form); ``n`` = values seen."""

    alpha: float = 0.3
    mean: float = 0.0
    var: float = 0.0
    n: int = 0

    def update(self, x: float) -> Ewma:
        if self.n == 0:
            self.mean, self.var = float(x), 0.0
        else:
            diff = x - self.mean
            incr = self.alpha * diff
            self.mean += incr
            self.var = (1 - self.alpha) * (self.var + diff * incr)
        self.n += 1
        return self

    @property
    def std(self) -> float:
        return math.sqrt(max(0.0, self.var))

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "mean": self.mean, "var": self.var, "n": self.n}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ewma:
        return cls(float(data["alpha"]), float(data["mean"]), float(data["var"]), int(data["n"]))

    @classmethod
    def over(cls, values: Iterable[float], alpha: float) -> Ewma:
        e = cls(alpha=alpha)
        for v in values:
            e.update(v)
        return e


def earlier_window_values(
    history: Mapping[int, Any],
    window_start_bucket: int,
    window_buckets: int,
    max_windows: int,
    value,
) -> list[float]:
    """Values of the non-overlapping windows of ``window_buckets`` buckets before ``window_start_bucket``,
    oldest first, limited to ``max_windows`` and to windows entirely after the first bucket present in
    ``history`` (earlier than that the brand was not observed, so it is not "history").

    ``value`` maps a :class:`WindowCounts` (the sum over one earlier window) to a number.
    """
    if not history:
        return []
    first_seen = min(history)
    values: list[float] = []
    for j in range(max_windows):
        end = window_start_bucket - 1 - j * window_buckets
        start = end - window_buckets + 1
        if start < first_seen:
            break
        values.append(float(value(window_sum(history, end, window_buckets))))
    values.reverse()
    return values

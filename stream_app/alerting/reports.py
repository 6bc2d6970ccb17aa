"""Feedback reports resolved against what the model actually said.

A report names a tweet and the label a person says is right (``tweet_id``, ``correct_label``, ``reporter``,
``at``: the feedback schema's required fields). Whether it is a misclassification is decided here, from the
prediction the worker recorded for that tweet (a bounded table, tweet id -> entry), never from a
``predicted_label`` the client claims: a claim that disagrees with the table is overruled and counted.

Pure functions and a per-partition index of the table; the Faust table and its changelog are wired in
:mod:`.agents`. Times are passed in (the wall clock of scoring and of the report, read at the runtime edge).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .windows import to_epoch

LABELS = ("negative", "neutral", "positive")
MAX_TEXT = 280  # what an alert lists of a tweet; the table stays small


def prediction_entry(ev: Mapping[str, Any], scored_ms: int) -> dict[str, Any]:
    """What the table keeps of an enriched tweet: enough to judge a report and to list it in an alert."""
    s = ev["sentiment"]
    return {"label": s["label"], "probs": s.get("probs"), "brand": ev.get("brand"),
            "text": str(ev.get("text") or "")[:MAX_TEXT], "at_ms": int(scored_ms)}


def parse_report(data: Any, received_ms: int) -> tuple[dict[str, Any] | None, str | None]:
    """A feedback event as a report (``at`` in epoch ms; the arrival time when absent), or why it is not one."""
    if not isinstance(data, Mapping):
        return None, "not a JSON object"
    for name in ("tweet_id", "correct_label", "reporter"):
        if not isinstance(data.get(name), str) or not data[name]:
            return None, f"{name} must be a non-empty string"
    if data["correct_label"] not in LABELS:
        return None, f"correct_label must be one of {', '.join(LABELS)}"
    for name in ("brand", "predicted_label", "text"):
        if data.get(name) is not None and not isinstance(data[name], str):
            return None, f"{name} must be a string"
    try:
        at_ms = int(to_epoch(data["at"]) * 1000) if data.get("at") is not None else received_ms
    except (TypeError, ValueError, OverflowError) as exc:  # int() of nan/inf raises: at_ms is finite
        return None, f"at: {exc}"[:200]
    return {"tweet_id": data["tweet_id"][:128], "correct_label": data["correct_label"],
            "reporter": data["reporter"][:128], "at_ms": at_ms, "claimed": data.get("predicted_label")}, None


@dataclass(frozen=True, slots=True)
class Resolution:
    """A report judged against the table: ``problem`` set when it cannot be judged (dead-lettered)."""

    kind: str  # misclassification | confirmation | unknown | expired
    report: dict[str, Any] | None = None  # the engine's misclassification report (brand, text, labels)
    problem: str | None = None
    overruled: bool = False  # the client's predicted_label disagreed with the table


def resolve(report: Mapping[str, Any], entry: Mapping[str, Any] | None, max_age_ms: int) -> Resolution:
    """Judge one report against the prediction ``entry`` recorded for its tweet (None: not in the table)."""
    tweet = report["tweet_id"]
    if entry is None:
        return Resolution("unknown", problem=f"unknown tweet_id {tweet!r}: no prediction recorded for it "
                                             "(never scored, or older than the prediction table keeps)")
    if report["at_ms"] - entry["at_ms"] > max_age_ms:
        hours = (report["at_ms"] - entry["at_ms"]) / 3_600_000
        return Resolution("expired", problem=f"tweet_id {tweet!r} was scored {hours:.1f} h before the report; "
                                             f"reports are judged up to {max_age_ms / 3_600_000:g} h after")
    predicted = entry["label"]
    overruled = report.get("claimed") is not None and report["claimed"] != predicted
    if report["correct_label"] == predicted:
        return Resolution("confirmation", overruled=overruled)
    return Resolution("misclassification", overruled=overruled, report={
        "id": tweet, "brand": entry.get("brand"), "text": entry.get("text"), "predicted_label": predicted,
        "probs": entry.get("probs"), "correct_label": report["correct_label"], "reporter": report["reporter"],
        "event_time_ms": report["at_ms"]})


def partition_of(tweet_id: str, partitions: int) -> int:
    """The partition of a tweet id on the by-id topics: chosen here, not by a producer's partitioner, so
    that predictions and reports meet on one partition whoever wrote them."""
    return zlib.crc32(tweet_id.encode("utf-8", "surrogatepass")) % partitions


def by_partition(entries: Iterable[tuple[str, dict[str, Any]]], partitions: int) -> dict[int, dict[str, Any]]:
    """A batch's prediction entries grouped by their by-id partition: one message (and one changelog write)
    per partition per batch instead of one per tweet (stream_app/app.py)."""
    out: dict[int, dict[str, Any]] = {}
    for tweet_id, entry in entries:
        out.setdefault(partition_of(tweet_id, partitions), {})[tweet_id] = entry
    return out


@dataclass
class PredictionIndex:
    """Where each tweet's prediction is in the table, and which table keys to drop, per partition.

    The table holds one key per predictions message (``<partition>:<offset>`` -> {tweet id: entry}); this
    index maps tweet ids to those keys and drops the oldest keys past ``max_age_ms`` or ``max_entries``
    entries. Kept per partition because a table delete is written to the changelog partition of the event
    being processed. In memory only: rebuilt from the table after a restart or a rebalance (:meth:`index`).
    """

    max_entries: int
    max_age_ms: int
    order: dict[int, deque[tuple[int, str, list[str]]]] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # tweet id -> table key
    sizes: dict[int, int] = field(default_factory=dict)

    def known(self, partition: int) -> bool:
        return partition in self.order

    def locate(self, tweet_id: str) -> str | None:
        return self.where.get(tweet_id)

    def index(self, partition: int, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Start tracking ``partition`` from its table items (key, {tweet id: entry})."""
        self.order[partition], self.sizes[partition] = deque(), 0
        for key, batch in sorted(items, key=lambda kv: min((e["at_ms"] for e in kv[1].values()), default=0)):
            self.add(partition, key, batch)

    def add(self, partition: int, key: str, batch: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Record a predictions message stored under ``key``; the table keys to delete now, oldest first."""
        q = self.order.setdefault(partition, deque())
        ids = list(batch)
        newest = max((int(e["at_ms"]) for e in batch.values()), default=0)
        q.append((newest, key, ids))
        for tweet_id in ids:
            self.where[tweet_id] = key
        self.sizes[partition] = self.sizes.get(partition, 0) + len(ids)
        out = []
        while len(q) > 1 and (self.sizes[partition] > self.max_entries or newest - q[0][0] > self.max_age_ms):
            _, old, old_ids = q.popleft()
            self.sizes[partition] -= len(old_ids)
            for tweet_id in old_ids:
                if self.where.get(tweet_id) == old:  # a re-scored tweet points to its newer key
                    del self.where[tweet_id]
            out.append(old)
        return out

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked from this worker: their ids are rebuilt if they come back."""
        for p in partitions:
            for _, key, ids in self.order.pop(p, ()):
                for tweet_id in ids:
                    if self.where.get(tweet_id) == key:
                        del self.where[tweet_id]
            self.sizes.pop(p, None)

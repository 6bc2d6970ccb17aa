"""Feedback reports resolved against what the model actually said.

A report names a tweet and the label a person says is right (``tweet_id``, ``correct_label``, ``reporter``,
``at``: the feedback schema's required fields). Whether it is a misclassification is decided here, from the
prediction the worker recorded for that tweet (a bounded table, tweet id -> entry), never from a
``predicted_label`` the client claims: a claim that disagrees with the table is overruled and counted.

Pure functions and a per-partition retention index; the Faust table and its changelog are wired in
:mod:`.agents`. Times are passed in (the wall clock of scoring and of the report, read at the runtime edge).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .windows import to_epoch

LABELS = ("negative", "neutral", "positive")
MAX_TEXT = 280  # what an alert lists of a tweet; the table stays small


def prediction_entry(ev: Mapping[str, Any], scored_ms: int, partition: int) -> dict[str, Any]:
    """What the table keeps of an enriched tweet: enough to judge a report and to list it in an alert."""
    s = ev["sentiment"]
    return {"label": s["label"], "probs": s.get("probs"), "brand": ev.get("brand"),
            "text": str(ev.get("text") or "")[:MAX_TEXT], "at_ms": int(scored_ms), "p": int(partition)}


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
    except (TypeError, ValueError, OverflowError) as exc:
        return None, f"at: {exc}"[:200]
    if not math.isfinite(at_ms):
        return None, "at must be a finite time"
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


@dataclass
class Retention:
    """Which tweet ids to drop from the table, per partition: past ``max_age_ms`` or beyond ``max_entries``.

    Kept per partition because a table delete is written to the changelog partition of the event being
    processed: a partition's entries are only ever evicted while processing that partition. Rebuilt from
    the table after a restart or a rebalance (:meth:`index`), since the order lives in memory only.
    """

    max_entries: int
    max_age_ms: int
    order: dict[int, deque[tuple[int, str]]] = field(default_factory=dict)

    def known(self, partition: int) -> bool:
        return partition in self.order

    def index(self, partition: int, entries: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Start tracking ``partition`` from the table's entries (tweet id, entry) of that partition."""
        self.order[partition] = deque(sorted((int(e["at_ms"]), k) for k, e in entries))

    def add(self, partition: int, tweet_id: str, at_ms: int) -> list[tuple[int, str]]:
        """Record a prediction; the (scored at, tweet id) to delete now (same partition), oldest first.

        A re-scored tweet is listed twice: delete only when the table's entry is the one that expired."""
        q = self.order.setdefault(partition, deque())
        q.append((at_ms, tweet_id))
        out = []
        while q and (len(q) > self.max_entries or at_ms - q[0][0] > self.max_age_ms):
            out.append(q.popleft())
        return out

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked from this worker: their order is rebuilt if they come back."""
        for p in partitions:
            self.order.pop(p, None)

"""Faust Records mirroring ``schemas/*.schema.json`` (a test keeps both in agreement).

The hot path moves plain dicts serialized with orjson; these Records document the contract
and are used where typed events help (feedback, alerts, dead letters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust


def tweet_key(tweet: Mapping[str, Any]) -> bytes | None:
    """Kafka key of a tweet on topic ``tweets``: its id.

    Enrichment is stateless, so any key is correct; the id spreads one brand's storm over every
    partition and worker. The worker re-keys enriched events by brand for the alerting tables.
    """
    key = tweet.get("id") or tweet.get("brand")
    return str(key).encode() if key else None


class Author(faust.Record, serializer="json"):
    id: str | None = None
    handle: str | None = None
    followers: int | None = None


class Tweet(faust.Record, serializer="json"):
    """Input event (flat form) on topic ``tweets``."""

    id: str
    text: str
    created_at: str | None = None
    lang: str | None = None
    brand: str | None = None
    author: Author | None = None
    is_retweet: bool = False
    retweet_of: str | None = None
    in_reply_to: str | None = None


class Sentiment(faust.Record, serializer="json"):
    label: str
    score: float
    probs: dict[str, float]
    reliable: bool


class ModelInfo(faust.Record, serializer="json"):
    name: str
    version: str


class EnrichedTweet(faust.Record, serializer="json"):
    """Output event on ``tweets.enriched``, keyed by brand."""

    id: str
    text: str
    created_at: str
    event_time_ms: int
    source_partition: int | None
    lang: str
    brand: str | None
    author: Author | None
    is_retweet: bool
    retweet_of: str | None
    in_reply_to: str | None
    sentiment: Sentiment
    is_claim: bool
    urgency: str
    topics: list[str]  # ["general"] when no topic matched (stream_app/kpi.py)
    incident: str  # "none" when there is none
    confidence: float
    model: ModelInfo
    rules_version: str
    processed_at: str
    truncated: bool = False  # scored on the first BADBUZZ_MAX_TEXT characters of a longer text


class Feedback(faust.Record, serializer="json"):
    """A comms-team correction on ``tweets.feedback``."""

    tweet_id: str
    correct_label: str
    reporter: str
    at: str
    predicted_label: str | None = None
    brand: str | None = None
    text: str | None = None


class AlertSample(faust.Record, serializer="json"):
    text: str
    id: str | None = None
    author: str | None = None
    link: str | None = None


class AlertEvent(faust.Record, serializer="json"):
    """An alert on topic ``alerts``: the source of truth for notifications."""

    id: str
    rule: str
    severity: str
    brand: str
    subject: str | None
    window_start: str
    window_end: str
    observed: float
    baseline: float | None
    threshold: float
    samples: list[AlertSample]
    dashboard_url: str
    created_at: str
    status: str
    reason: str
    incident_start: str | None
    note: str | None
    lang: str
    team: str
    channels: list[str] | None = None
    decision: str | None = None


class ErrorInfo(faust.Record, serializer="json"):
    code: str
    message: str


class SourceInfo(faust.Record, serializer="json"):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key: str | None = None


class Truncation(faust.Record, serializer="json"):
    original_bytes: int
    sha256: str


class DeadLetter(faust.Record, serializer="json"):
    """A message that could not be enriched, on ``tweets.dlq``."""

    error: ErrorInfo
    source: SourceInfo
    failed_at: str
    payload: str | None = None
    payload_base64: str | None = None
    truncated: Truncation | None = None


RECORD_FOR_SCHEMA = {
    "tweet": Tweet,
    "enriched": EnrichedTweet,
    "feedback": Feedback,
    "alert": AlertEvent,
    "dead-letter": DeadLetter,
}

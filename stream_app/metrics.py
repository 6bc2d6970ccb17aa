"""Prometheus metrics (one registry per process, exposed at ``/metrics`` on the worker)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter("badbuzz_events_in_total", "Messages read from the input topic", registry=REGISTRY)
ENRICHED = Counter("badbuzz_events_enriched_total", "Tweets enriched and published", registry=REGISTRY)
CONSUMER_REPAIRS = Counter(
    "badbuzz_consumer_repairs_total",
    "Events the Faust consumer dropped around a rebalance that were read again (stream_app.batching)",
    ["kind"], registry=REGISTRY,
)
for _kind in ("gap_refilled", "tail_reread", "commit_hole"):
    CONSUMER_REPAIRS.labels(_kind)  # exported at 0 from the start
DEAD_LETTERED = Counter(
    "badbuzz_events_dead_lettered_total", "Messages sent to the dead-letter topic", ["reason"], registry=REGISTRY
)
BATCH_SIZE = Histogram(
    "badbuzz_scoring_batch_size", "Tweets per scoring micro-batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY,
)  # fmt: skip
SCORING_SECONDS = Histogram(
    "badbuzz_scoring_batch_seconds", "Wall time to score one micro-batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=REGISTRY,
)  # fmt: skip
E2E_SECONDS = Histogram(
    "badbuzz_end_to_end_latency_seconds", "Kafka ingest timestamp to enriched event published",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)  # fmt: skip
SENTIMENT = Counter(
    "badbuzz_sentiment_total", "Enriched tweets by brand and label", ["brand", "label"], registry=REGISTRY
)
INCIDENTS = Counter(
    "badbuzz_incidents_total", "Enriched tweets by brand and incident", ["brand", "incident"], registry=REGISTRY
)
ALERTS = Counter("badbuzz_alerts_total", "Alerts raised", ["rule", "severity"], registry=REGISTRY)
NOTIFICATIONS = Counter(
    "badbuzz_notifications_total", "Notifier deliveries", ["channel", "outcome"], registry=REGISTRY
)
ALERT_ENGINE_EVENTS = Counter(
    "badbuzz_alert_engine_events_total", "Tweets and reports seen by the alert engine: counted, duplicate "
    "(re-delivered, counted once by tweet id) or late (its bucket was already final)", ["outcome"],
    registry=REGISTRY,
)
VOCABULARY_WORDS = Counter(
    "badbuzz_vocabulary_words_total", "Words of enriched tweets, known or unknown to the model's vocabulary "
    "(alerting/health.py: letters-only words of 3+ characters outside mentions, tags and links)", ["vocabulary"],
    registry=REGISTRY,
)
HEALTH_VALUE = Gauge(
    "badbuzz_health_value", "Last value of each health rule over its shortest window (alerting/health.py)",
    ["rule"], registry=REGISTRY,
)
FEEDBACK = Counter("badbuzz_feedback_total", "Feedback events", ["kind"], registry=REGISTRY)
PREDICT_REQUESTS = Counter(
    "badbuzz_predict_requests_total", "POST /predict requests by outcome: ok, invalid (400), too_large (413), "
    "unsupported_type (415), rate_limited (429), denied (401/403) or error (500)", ["outcome"], registry=REGISTRY,
)
for _outcome in ("ok", "invalid", "too_large", "unsupported_type", "rate_limited", "denied", "error"):
    PREDICT_REQUESTS.labels(_outcome)
PREDICT_TWEETS = Counter("badbuzz_predict_tweets_total", "Tweets scored by POST /predict", registry=REGISTRY)
PREDICT_SECONDS = Histogram(
    "badbuzz_predict_seconds", "POST /predict wall time, request read to response (scored requests only)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5), registry=REGISTRY,
)  # fmt: skip  (0.15 and 0.2: the predict_latency alert thresholds)
CONSUMER_LAG = Gauge("badbuzz_consumer_lag", "Input topic lag per partition", ["partition"], registry=REGISTRY)
MODEL_INFO = Info("badbuzz_model", "Sentiment model and rules in use", registry=REGISTRY)


class _CacheCollector:
    """Reads the sentiment cache's own counters at scrape time (no per-lookup metric calls)."""

    def __init__(self, cache) -> None:
        self.cache = cache

    def collect(self):
        lookups = CounterMetricFamily("badbuzz_sentiment_cache_lookups", "Sentiment cache lookups", labels=["result"])
        lookups.add_metric(["hit"], self.cache.hits)
        lookups.add_metric(["miss"], self.cache.misses)
        yield lookups
        size = GaugeMetricFamily("badbuzz_sentiment_cache_entries", "Entries in the sentiment cache")
        size.add_metric([], len(self.cache))
        yield size


_watched: list[_CacheCollector] = []


def watch_cache(cache) -> None:
    """Expose ``cache`` hit/miss counters; replaces a previously watched cache."""
    while _watched:
        REGISTRY.unregister(_watched.pop())
    collector = _CacheCollector(cache)
    REGISTRY.register(collector)
    _watched.append(collector)

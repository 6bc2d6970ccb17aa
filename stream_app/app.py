"""The Faust application: topics, the enrichment agent and the worker's web endpoints.

Agents stay thin: parsing, scoring, rules and alerting are pure modules wired here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import signal
import socket
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from . import metrics
from .alerting.health import unknown_words
from .alerting.reports import by_partition, prediction_entry
from .batching import heal_stalled, prepared_batches
from .broker import bootstrap
from .cardinality import BrandCap
from .config import Settings
from .consumer_fixes import dedup_commit_offsets, fix_kafka_consumer, never_commit_skipped, redeliver_discarded
from .enrich import Enricher, now_iso
from .kpi import incident_of
from .logs import about_message
from .parsing import InvalidTweet, parse_tweet
from .web.views import wire_web

log = logging.getLogger("badbuzz")

MAX_DLQ_PAYLOAD = 64 * 1024
MAX_DLQ_KEY = 256  # a 200 KB key echoed twice once made a 1.2 MB dead letter the broker refused
RECENT_PREDICTIONS = 20_000  # tweet id -> prediction, so /feedback can name what the model said
STOP_GRACE_S = 25.0  # Kubernetes sends SIGKILL 30 s after SIGTERM


def dead_letter(raw: bytes | None, code: str, message: str, *, topic: str, partition: int, offset: int,
                timestamp_ms: int | None, key: bytes | None) -> dict[str, Any]:
    """A dead-letter event keeping the original bytes (base64 when they are not UTF-8), both bounded.

    Value and key are truncated (with size and SHA-256) so the dead letter always fits the broker's
    1 MB limit; the full record stays at source topic/partition/offset.
    """
    key = bytes(key) if key else None
    event: dict[str, Any] = {
        "error": {"code": code, "message": message[:1000]},
        "source": {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp_ms": timestamp_ms,
            "key": key[:MAX_DLQ_KEY].decode("utf-8", "replace") if key else None,
        },
        "failed_at": now_iso(),
    }
    if key and len(key) > MAX_DLQ_KEY:
        event["source"]["key_truncated"] = {"original_bytes": len(key), "sha256": hashlib.sha256(key).hexdigest()}
    raw = bytes(raw or b"")
    if len(raw) > MAX_DLQ_PAYLOAD:
        event["truncated"] = {"original_bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        raw = raw[:MAX_DLQ_PAYLOAD]
    try:
        event["payload"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        event["payload_base64"] = base64.b64encode(raw).decode("ascii")
    return event


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The dead letter's Kafka key: the original one when small, never an oversized one."""
    return bytes(key) if key and len(key) <= MAX_DLQ_KEY else None


def dead_letter_of(msg: Any, code: str, message: str) -> tuple[bytes | None, dict[str, Any]]:
    """(Kafka key, dead-letter event) for one consumed record that cannot be processed."""
    letter = dead_letter(msg.value, code, message, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                         timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else None, key=msg.key)
    return dead_letter_key(msg.key), letter


def _own_children() -> list[int]:
    """Pids of this process's children (the embedded broker), from /proc."""
    me, out = os.getpid(), []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat", "rb") as fh:
                    if int(fh.read().rsplit(b")", 1)[1].split()[1]) == me:
                        out.append(int(stat))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _force_exit(grace: float) -> None:
    """Last resort of a stop that hangs: stop our children (the embedded broker), then exit at once."""
    log.error("worker still stopping %.0f s after the stop signal (broker unreachable?): exiting now", grace)
    for pid in _own_children():
        try:
            os.killpg(pid, signal.SIGTERM) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    time.sleep(1.0)
    logging.shutdown()
    os._exit(1)


class BadbuzzApp(faust.App):
    """A Faust app whose worker stop is bounded (tests/test_security.py::test_sigterm_*).

    faust-streaming 0.15.3's stop waits forever for its consumer thread when the broker is unreachable
    (it needed SIGKILL): once a worker starts stopping, a daemon timer ends the process after
    ``STOP_GRACE_S``. Armed only inside a Faust worker (``in_worker``), so an in-process app never exits.
    """

    stop_grace_s: float = STOP_GRACE_S
    _stop_timer: threading.Timer | None = None

    async def on_stop(self) -> None:
        if self.in_worker and self._stop_timer is None:
            self._stop_timer = threading.Timer(self.stop_grace_s, _force_exit, args=(self.stop_grace_s,))
            self._stop_timer.daemon = True
            self._stop_timer.start()
        await super().on_stop()


@dataclass
class Pipeline:
    """Everything a worker holds: the Faust app, its topics and the loaded components."""

    settings: Settings
    app: faust.App
    enricher: Enricher
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="score"))
    started_at: float = field(default_factory=time.time)
    agents: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    brands: set[str] = field(default_factory=set)
    brand_cap: BrandCap = field(default_factory=lambda: BrandCap(200))
    recent: OrderedDict[str, tuple[str | None, str, str]] = field(default_factory=OrderedDict)
    negatives: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))
    latest_alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    alert_rules: Any = None
    alert_engine: Any = None
    health: Any = None  # alerting.health.HealthMonitor when alerting is wired
    tally: Any = None  # alerting.summary.Tally when the daily summary is on

    async def send_dead_letter(self, kafka_key: bytes | None, letter: dict[str, Any]) -> None:
        """Log, publish and count one dead letter (tweets and feedback alike)."""
        src, error = letter["source"], letter["error"]
        log.info("dead-lettered %s[%s]@%s: %s: %s", src["topic"], src["partition"], src["offset"], error["code"],
                 error["message"][:200], extra={"topic": src["topic"], "partition": src["partition"],
                                                "offset": src["offset"], "code": error["code"]})
        await self.topics["dlq"].send(key=kafka_key, value=orjson.dumps(letter))
        metrics.DEAD_LETTERED.labels(error["code"]).inc()

    def update_lag(self) -> int | None:
        """Input-topic lag per assigned partition (highwater minus committed offset); the total, or None."""
        consumer = self.app.consumer if self.app.producer is not None else None
        if consumer is None:
            return None
        total = None
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == self.settings.topics.tweets]
            for tp in assigned:
                high = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)  # faust keeps no public accessor
                if high is not None:
                    lag = max(0, high - (committed or 0))
                    metrics.CONSUMER_LAG.labels(str(tp.partition)).set(lag)
                    total = (total or 0) + lag
        except Exception:  # noqa: BLE001 - metrics must never break a scrape
            log.debug("lag metric unavailable", exc_info=True)
        return total

    def ready(self) -> dict[str, bool]:
        consumer = self.app.consumer if self.app.producer is not None else None
        try:
            assigned = bool(consumer and consumer.assignment())
        except Exception:  # noqa: BLE001 - not started yet
            assigned = False
        return {"model_loaded": self.enricher is not None, "broker_reachable": broker_reachable(self.settings.broker),
                "assignment": assigned}


def broker_reachable(url: str | None, timeout: float = 0.5) -> bool:
    """A TCP connection to one of the bootstrap servers opens (the cheapest honest reachability probe)."""
    for hostport in bootstrap(url or "").split(","):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def _negative_row(ev: dict[str, Any]) -> dict[str, Any]:
    author = ev.get("author") or {}
    return {"id": ev["id"], "brand": ev.get("brand"), "text": ev["text"], "created_at": ev["created_at"],
            "label": ev["sentiment"]["label"], "p_negative": ev["sentiment"]["probs"]["negative"],
            "urgency": ev["urgency"], "incident": incident_of(ev), "author": author.get("handle"),
            "followers": author.get("followers")}


def ticks_topic(settings: Settings) -> str:
    return f"{settings.app_id}-alert-ticks"


def internal_topics(settings: Settings) -> list[str]:
    """Topics the worker writes for itself (created with the others; deploy/kafka/create-topics.sh):
    the alert ticks, predictions and reports keyed by tweet id, resolved reports keyed by brand, and the
    daily summary's partial tallies (one key: one partition adds them up)."""
    a = settings.app_id
    return [ticks_topic(settings), f"{a}-predictions-by-id", f"{a}-feedback-by-id", f"{a}-feedback-resolved",
            f"{a}-summary-stats"]


def build_app(settings: Settings, enricher: Enricher, alert_config: Any = None, dispatcher: Any = None) -> Pipeline:
    """The Faust app with its agents; alerting is wired when an alert config is given."""
    fix_kafka_consumer(settings.fetch_max_wait_ms)
    never_commit_skipped()
    dedup_commit_offsets()
    redeliver_discarded()
    app = BadbuzzApp(
        settings.app_id,
        broker=settings.broker,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # Faust binds 0.0.0.0 unless told (tests/test_security.py)
        web_port=settings.web_port,
        web_enabled=True,
        # faust-streaming 0.15.3 serves /table/<name>/<key> (table data: recipients, tweet samples) and
        # /router/... with no auth; badbuzz routes nothing across nodes (tests/test_security.py).
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        datadir=str(settings.state_dir),
        store="memory://",
        table_cleanup_interval=30,
        producer_linger_ms=5,
    )
    t = settings.topics

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         partitions=settings.partitions)

    pipe = Pipeline(settings=settings, app=app, enricher=enricher)
    known = set(enricher.rules.brands) | set(getattr(getattr(alert_config, "policy", None), "brand_languages", {}))
    pipe.brand_cap = BrandCap(settings.max_brands, known)
    pipe.topics = {name: raw_topic(getattr(t, name)) for name in ("tweets", "enriched", "feedback", "alerts", "dlq")}
    metrics.MODEL_INFO.info({"model": enricher.model.name, "model_version": enricher.model.version,
                             "rules_version": enricher.rules.version})
    metrics.watch_cache(enricher.model.cache)
    _wire_enrichment(pipe)
    if alert_config is not None:
        from .alerting.agents import wire_alerting

        pipe.alert_rules = alert_config.rules
        wire_alerting(pipe, alert_config, dispatcher)
    wire_web(pipe)
    return pipe


def _wire_enrichment(pipe: Pipeline) -> None:
    app, s = pipe.app, pipe.settings
    out_topic = pipe.topics["enriched"]

    @app.agent(pipe.topics["tweets"], name="enrich")
    async def enrich(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()

        def prepare(events: list[Any]) -> tuple[list[tuple[dict[str, Any], Any]], list[Any], Any]:
            """Parse a batch and start scoring it in the executor (awaited when the batch's turn comes)."""
            metrics.EVENTS_IN.inc(len(events))
            good: list[tuple[dict[str, Any], Any]] = []
            dead: list[tuple[bytes | None, dict[str, Any]]] = []
            for event in events:
                msg = event.message
                ts_ms = int(msg.timestamp * 1000) if msg.timestamp else None
                try:
                    good.append((parse_tweet(event.value, max_text=s.max_text, fallback_ms=ts_ms), msg))
                except InvalidTweet as exc:
                    dead.append(dead_letter_of(msg, exc.code, exc.message))
                except Exception as exc:  # noqa: BLE001 - a parser bug must cost one record, not the agent
                    # "invalid_field": the closest code the dead-letter schema's enum has for it.
                    log.exception("unexpected error parsing %s[%s]@%s", msg.topic, msg.partition, msg.offset,
                                  extra=about_message(msg))
                    dead.append(dead_letter_of(msg, "invalid_field", f"parser error: {type(exc).__name__}: {exc}"))
            scoring = timed(pipe.enricher.enrich, [g[0] for g in good]) if good else None
            return good, dead, scoring

        def timed(fn: Any, arg: Any) -> Any:
            def run() -> tuple[Any, float]:
                started = time.perf_counter()
                return fn(arg), time.perf_counter() - started
            return loop.run_in_executor(pipe.executor, run)

        vocabulary = pipe.enricher.model.vocabulary
        batches = prepared_batches(stream, s.batch_size, s.batch_wait, bootstrap(s.broker), prepare)
        async for events, (good, dead, scoring) in batches:
            enriched: list[tuple[dict[str, Any], Any]] = []
            if scoring is not None:
                try:
                    out, seconds = await scoring
                    enriched = list(zip(out, (g[1] for g in good), strict=True))
                    metrics.SCORING_SECONDS.observe(seconds)
                except Exception:
                    # Isolate the poison message: score one by one so the rest of the batch survives.
                    for tweet, msg in good:
                        try:
                            one = await loop.run_in_executor(pipe.executor, pipe.enricher.enrich, [tweet])
                            enriched.append((one[0], msg))
                        except Exception as exc:  # noqa: BLE001 - any scoring failure is dead-lettered
                            log.warning("tweet %s could not be scored: %s: %s", tweet["id"], type(exc).__name__, exc,
                                        extra=about_message(msg, tweet_id=tweet["id"]))
                            dead.append(dead_letter_of(msg, "scoring_failed", f"{type(exc).__name__}: {exc}"[:500]))
                metrics.BATCH_SIZE.observe(len(good))
            now = time.time()
            latencies: list[float] = []
            recent = pipe.recent
            predictions = pipe.topics.get("predictions")
            scored: list[tuple[str, dict[str, Any]]] = []
            tally, health = pipe.tally, pipe.health
            words = unknown = 0
            for ev, msg in enriched:
                ev["source_partition"] = msg.partition
                brand = ev.get("brand")
                recent[ev["id"]] = (brand, ev["sentiment"]["label"], ev["text"])
                if len(recent) > RECENT_PREDICTIONS:
                    recent.popitem(last=False)
                if ev["sentiment"]["label"] == "negative":
                    pipe.negatives.append(_negative_row(ev))
                await out_topic.send(key=(brand or "").encode(), value=orjson.dumps(ev))
                if predictions is not None:
                    scored.append((ev["id"], prediction_entry(ev, int(now * 1000))))
                label = pipe.brand_cap.label(brand)
                metrics.SENTIMENT.labels(label, ev["sentiment"]["label"]).inc()
                if incident := incident_of(ev):
                    metrics.INCIDENTS.labels(label, incident).inc()
                if msg.timestamp:
                    latencies.append(max(0.0, now - msg.timestamp))
                    metrics.E2E_SECONDS.observe(latencies[-1])
                if tally is not None:
                    tally.tweet(now, brand or "-", ev["sentiment"]["label"] == "negative", incident is not None)
                if health is not None:
                    w, u = unknown_words(ev["text"], vocabulary)
                    words, unknown = words + w, unknown + u
            metrics.ENRICHED.inc(len(enriched))
            # what feedback is judged against (alerting/reports.py): one message per by-id partition
            for part, batch in by_partition(scored, s.partitions).items():
                await predictions.send(key=f"p{part}".encode(), value=orjson.dumps(batch), partition=part)
            for kafka_key, d in dead:
                await pipe.send_dead_letter(kafka_key, d)
            if tally is not None:
                tally.batch(now, dead=len(dead), latencies_s=latencies)
            if health is not None:
                metrics.VOCABULARY_WORDS.labels("unknown").inc(unknown)
                metrics.VOCABULARY_WORDS.labels("known").inc(words - unknown)
                health.observe_batch(now, tweets=len(events), dead=len(dead), latencies_s=latencies,
                                     labels=[ev["sentiment"]["label"] for ev, _ in enriched], words=words,
                                     unknown=unknown)

    pipe.agents["enrich"] = enrich

    @app.timer(2.0)
    async def heal() -> None:
        await heal_stalled(app)

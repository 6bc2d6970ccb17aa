"""Faust wiring of the alerting core: event-time count tables, rule evaluation, alerts, delivery.

Topics are co-partitioned by brand (``tweets.enriched`` and ``tweets.feedback`` are keyed by brand; the
input ``tweets`` need not be: enrichment re-keys),
so one worker owns all buckets of a brand. The count table holds tumbling buckets keyed
``brand|bucket``; rules sum the last K buckets (cheaper than hopping windows). Rules are evaluated
once per brand per micro-batch and, via tick messages from a timer, when traffic is quiet.
Delivery is idempotent per alert id: the ``alert-deliveries`` table remembers which
``channel:recipient`` pairs already got an alert, so a replay after a crash sends nothing twice.
A delivery is first marked as started (``~sms:...``) and the changelog flushed before any provider
is called; a crash before the confirmation leaves it "uncertain": SMS is then checked against
Twilio's message list, e-mail is sent again with the same Message-ID.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

import faust
import orjson
from faust.streams import _current_event

from .. import metrics
from ..batching import acked_batches
from ..broker import bootstrap
from .config import AlertConfig
from .feedback import is_misclassification
from .notifiers import Dispatcher
from .policy import Alert
from .rules import evaluate
from .windows import WindowCounts, table_key, to_epoch

log = logging.getLogger("badbuzz.alerting")
TICK_SECONDS = 10.0


def wire_alerting(pipe: Any, config: AlertConfig, dispatcher: Dispatcher) -> None:
    app: faust.App = pipe.app
    s = pipe.settings
    rules = config.rules
    policy = config.make_policy()
    horizon = rules.history_buckets
    parts = s.partitions

    counts = app.Table("alert-counts", default=None, partitions=parts, help="brand|bucket -> WindowCounts")
    groups = app.Table("alert-groups", default=None, partitions=parts, help="rule:brand:subject -> policy state")
    digests = app.Table("alert-digest", default=None, partitions=parts, help="brand -> alerts held by quiet hours")
    deliveries = app.Table("alert-deliveries", default=None, partitions=parts, help="alert id -> delivered pairs")
    pipe.tables.update(counts=counts, groups=groups, digests=digests, deliveries=deliveries)

    tick_name = f"{s.app_id}-alert-ticks"  # pre-created with the other topics (see app.ticks_topic)
    ticks = app.topic(tick_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=parts)
    source = app.topic(s.topics.enriched, s.topics.feedback, tick_name, key_type=bytes,
                       value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=parts)
    alerts_topic = pipe.topics["alerts"]
    brands: set[str] = set()
    pipe.brands = brands

    def history(brand: str, now_bucket: int) -> dict[int, dict]:
        out = {}
        for b in range(now_bucket - horizon + 1, now_bucket + 1):
            v = counts.get(table_key(brand, b))
            if v is not None:
                out[b] = v
        return out

    def working(pending: dict[tuple[str, int], WindowCounts], brand: str, bucket: int) -> WindowCounts:
        """The batch's working copy of one bucket: read once, written once per micro-batch."""
        w = pending.get((brand, bucket))
        if w is None:
            w = pending[(brand, bucket)] = WindowCounts.from_dict(counts.get(table_key(brand, bucket)))
        return w

    def write_back(pending: dict[tuple[str, int], WindowCounts], source_event: dict[str, Any]) -> None:
        for (brand, bucket), w in pending.items():
            if brand not in source_event:  # only replayed events of this brand in the batch: nothing new
                continue
            _as_current(source_event[brand])
            key = table_key(brand, bucket)
            if key not in counts:  # a new bucket: drop the ones that just left the horizon
                for old in range(bucket - horizon - 10, bucket - horizon + 1):
                    counts.pop(table_key(brand, old), None)
            counts[key] = w.to_dict()

    async def decide(candidates, brand: str) -> None:
        now = time.time()
        for cand in candidates:
            alert = Alert.from_candidate(cand, dashboard_url=s.public_url)
            decision = policy.decide(groups.get(alert.group_key), alert, now)
            if decision.deliver:
                # Publish before saving the state: a crash in between re-publishes the same alert id,
                # which delivery deduplicates.
                event = alert.to_dict() | {"channels": sorted(decision.channels), "reason": decision.reason}
                await alerts_topic.send(key=alert.id.encode(), value=orjson.dumps(event))
                metrics.ALERTS.labels(alert.rule, alert.severity).inc()
            if decision.deferred:
                digests[brand] = policy.add_to_digest(digests.get(brand), decision, now)
            groups[alert.group_key] = decision.state

    @app.agent(source, name="alerting")
    async def alerting(stream: faust.StreamT) -> None:
        async for events in acked_batches(stream, 256, 0.05, bootstrap(s.broker)):
            latest: dict[str, int] = {}
            source_event: dict[str, Any] = {}
            claims: list[tuple[str, dict]] = []
            pending: dict[tuple[str, int], WindowCounts] = {}
            for ev in events:
                # Table writes go to the changelog partition of the current event; the batch
                # iterator does not set it, so do it here (a brand always comes from one partition).
                _as_current(ev)
                topic = ev.message.topic
                try:
                    data = orjson.loads(ev.value)
                except orjson.JSONDecodeError:
                    log.warning("alerting: skipping non-JSON message on %s", topic)
                    continue
                if topic == s.topics.enriched:
                    brand = data.get("brand") or "-"
                    bucket = rules.buckets.bucket_of(data["event_time_ms"] / 1000)
                    w = working(pending, brand, bucket)
                    source = f"{topic}/{ev.message.partition}"
                    if w.already_applied(source, ev.message.offset):
                        continue  # replayed after a crash: already counted in the changelog
                    w.add_tweet(data)
                    w.mark_applied(source, ev.message.offset)
                    if data.get("is_claim") and data.get("urgency") == "critical":
                        claims.append((brand, data))
                elif topic == s.topics.feedback:
                    brand = data.get("brand") or "-"
                    kind = "misclassification" if is_misclassification(data) else "confirmation"
                    metrics.FEEDBACK.labels(kind).inc()
                    if kind != "misclassification":
                        continue
                    bucket = rules.buckets.bucket_of(to_epoch(data.get("at") or time.time()))
                    w = working(pending, brand, bucket)
                    source = f"{topic}/{ev.message.partition}"
                    if w.already_applied(source, ev.message.offset):
                        continue
                    w.add_misclassification()
                    w.mark_applied(source, ev.message.offset)
                else:  # tick: evaluate at wall-clock time and flush digests that are due
                    brand = data["brand"]
                    bucket = rules.buckets.bucket_of(time.time())
                    await flush_digest(brand)
                brands.add(brand)
                source_event[brand] = ev
                latest[brand] = max(bucket, latest.get(brand, bucket))
            write_back(pending, source_event)
            for brand, bucket in latest.items():
                _as_current(source_event[brand])
                await decide(evaluate(rules, brand, bucket, history(brand, bucket)), brand)
            for brand, data in claims:
                _as_current(source_event[brand])
                bucket = rules.buckets.bucket_of(data["event_time_ms"] / 1000)
                await decide(evaluate(rules, brand, bucket, {}, event=data), brand)

    async def flush_digest(brand: str) -> None:
        due, keep = policy.split_due_digest(digests.get(brand), time.time())
        if due:
            digests[brand] = keep
            results = await dispatcher.deliver_digest(due, policy.digest_recipients(due))
            count_results(results)

    @app.timer(TICK_SECONDS)
    async def tick() -> None:
        for brand in list(brands):
            await ticks.send(key=brand.encode(), value=orjson.dumps({"brand": brand}))

    @app.agent(alerts_topic, name="notify")
    async def notify(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                data = orjson.loads(event.value)
                alert = Alert.from_dict(data)
            except Exception as exc:  # noqa: BLE001 - a foreign message on the alerts topic
                log.warning("notify: skipping malformed alert: %s", exc)
                continue
            pipe.latest_alerts.append(data)
            # "sms:+33..." = delivered; "~sms:+33..." = started, outcome unknown (a crash came in between)
            marks = set(deliveries.get(alert.id) or ())
            done = {m for m in marks if not m.startswith("~")}
            uncertain = {m[1:] for m in marks if m.startswith("~")} - done
            routes = policy.config.routing.for_severity(alert.severity)
            wanted = data.get("channels")
            channels = {ch: r for ch, r in routes.items() if wanted is None or ch in wanted}
            todo = {f"{ch}:{r}" for ch, rs in channels.items() for r in rs} - done
            if todo - uncertain:
                # write-ahead: the changelog knows a delivery started before any provider is called
                deliveries[alert.id] = sorted(marks | {"~" + k for k in todo})
                await app.producer.flush()
            results = await dispatcher.deliver(alert, channels=channels, skip=done, uncertain=uncertain)
            count_results(results)
            done |= {f"{r.channel}:{r.recipient}" for r in results if r.ok}
            deliveries[alert.id] = sorted(done)

    pipe.agents.update(alerting=alerting, notify=notify)


def _as_current(event: Any) -> None:
    """Make ``event`` the current event of this agent task, so table writes use its partition.

    Only the context variable is set (not the stream's attribute, which its buffer task reads).
    """
    _current_event.set(weakref.ref(event))


def count_results(results: list[Any]) -> None:
    for r in results:
        outcome = "skipped" if getattr(r, "skipped", False) else ("delivered" if r.ok else "failed")
        metrics.NOTIFICATIONS.labels(r.channel, outcome).inc()

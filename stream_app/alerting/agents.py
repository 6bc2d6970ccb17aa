"""Faust wiring of the alerting core: the event-time alert engine per brand, alerts, delivery.

``tweets.enriched`` and ``tweets.feedback`` are keyed by brand, so one worker owns a brand's engine state
(table ``alert-state``, brand -> :mod:`.engine` state). Each enriched tweet names the input partition it was
read from; the engine's watermark is the slowest partition's event time, so a replay read as fast as the
partitions go finalises the same buckets, in the same order, as a paced stream, and raises the same alerts.

The wall clock lives here only: a timer sends tick messages, and a brand that has been quiet for
``idle_flush_seconds`` has its buckets finalised (everything seen, or up to now minus the allowed lateness
when its stream is live), and quiet-hours digests that are due are delivered.

Delivery is idempotent per alert id: the ``alert-deliveries`` table remembers which ``channel:recipient``
pairs already got an alert, so a replay after a crash sends nothing twice. A delivery is first marked as
started (``~sms:...``) and the changelog flushed before any provider is called; a crash before the
confirmation leaves it "uncertain": SMS is then checked against Twilio's message list, e-mail is sent again
with the same Message-ID. Per recipient, at most ``sms_per_hour`` SMS go out in any hour; the excess is
carried by the alert's e-mail.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections import deque
from typing import Any

import faust
import orjson
from faust.streams import _current_event

from .. import metrics
from ..batching import acked_batches
from ..broker import bootstrap
from ..logs import about_message
from .config import AlertConfig
from .engine import AlertEngine, Outcome
from .feedback import is_misclassification
from .notifiers import Dispatcher
from .policy import Alert
from .windows import to_epoch

log = logging.getLogger("badbuzz.alerting")
TICK_SECONDS = 10.0
TICK_ACTIVE_SECONDS = 3600.0  # ticks only for brands with events in the last hour (brand names are unbounded)
LIVE_HORIZON_MS = 6 * 3_600_000  # newest event time this close to the wall clock: the brand's stream is live


def wire_alerting(pipe: Any, config: AlertConfig, dispatcher: Dispatcher) -> None:
    app: faust.App = pipe.app
    s = pipe.settings
    rules = config.rules
    policy = config.make_policy()
    engine = AlertEngine(rules, expected_sources=s.partitions)
    parts = s.partitions

    states = app.Table("alert-state", default=None, partitions=parts, help="brand -> alert engine state")
    groups = app.Table("alert-groups", default=None, partitions=parts, help="rule:brand:subject -> policy state")
    digests = app.Table("alert-digest", default=None, partitions=parts, help="brand -> alerts held by quiet hours")
    deliveries = app.Table("alert-deliveries", default=None, partitions=parts, help="alert id -> delivered pairs")
    pipe.tables.update(states=states, groups=groups, digests=digests, deliveries=deliveries)
    pipe.alert_engine = engine

    tick_name = f"{s.app_id}-alert-ticks"  # pre-created with the other topics (see app.ticks_topic)
    ticks = app.topic(tick_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=parts)
    source = app.topic(s.topics.enriched, s.topics.feedback, tick_name, key_type=bytes,
                       value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=parts)
    alerts_topic = pipe.topics["alerts"]
    brands: set[str] = set()
    pipe.brands = brands
    arrivals: dict[str, float] = {}  # brand -> wall clock of its last event (idle flush only)
    sms_sent: dict[str, deque[float]] = {}  # recipient -> wall clock of SMS sent in the last hour

    async def publish(candidates, brand: str) -> None:
        for cand in candidates:
            alert = Alert.from_candidate(cand, dashboard_url=s.public_url, lang=policy.config.language_of(brand))
            at = to_epoch(cand.window_end)  # event time: the policy's windows never read the wall clock
            decision = policy.decide(groups.get(alert.group_key), alert, at)
            if decision.deliver:
                # Publish before saving the state: a crash in between re-publishes the same alert id,
                # which delivery deduplicates.
                event = alert.to_dict() | {"channels": sorted(decision.channels), "decision": decision.reason}
                await alerts_topic.send(key=alert.id.encode(), value=orjson.dumps(event))
                metrics.ALERTS.labels(alert.rule, alert.severity).inc()
            if decision.deferred:
                digests[brand] = policy.add_to_digest(digests.get(brand), decision, at)
            groups[alert.group_key] = decision.state

    async def dead_letter_feedback(ev: Any, problem: str) -> None:
        """Feedback is outside input too: a bad report is dead-lettered with its reason, never a crash."""
        from ..app import dead_letter_of  # the one dead-letter format (app.py wires this module)

        _, letter = dead_letter_of(ev.message, "invalid_feedback", problem[:500])
        log.info("dead-lettered feedback: %s", problem[:200], extra=about_message(ev.message, code="invalid_feedback"))
        await pipe.topics["dlq"].send(key=None, value=orjson.dumps(letter))
        metrics.FEEDBACK.labels("invalid").inc()
        metrics.DEAD_LETTERED.labels("invalid_feedback").inc()

    def count(out: Outcome) -> None:
        for label, n in (("counted", out.counted), ("duplicate", out.duplicates), ("late", out.late)):
            if n:
                metrics.ALERT_ENGINE_EVENTS.labels(label).inc(n)

    def idle_flush(brand: str, st: dict[str, Any]) -> list | None:
        """A quiet brand: its seen buckets are final (a replay that ended, a live stream that went quiet).
        ``None`` when nothing moved."""
        now_ms = int(time.time() * 1000)
        newest = engine.max_event_ms(st)
        before = st["final"]
        if newest is None:
            return None
        if now_ms - newest <= LIVE_HORIZON_MS:
            raised = engine.advance(st, brand, max(now_ms - engine.lateness_ms, newest))
        else:
            raised = engine.flush(st, brand)
        return raised if st["final"] != before else None

    @app.agent(source, name="alerting")
    async def alerting(stream: faust.StreamT) -> None:
        async for events in acked_batches(stream, 256, 0.05, bootstrap(s.broker)):
            working: dict[str, dict[str, Any]] = {}
            raised: dict[str, list] = {}
            source_event: dict[str, Any] = {}
            for ev in events:
                # Table writes go to the changelog partition of the current event; the batch
                # iterator does not set it, so do it here (a brand always comes from one partition).
                _as_current(ev)
                topic = ev.message.topic
                try:
                    data = orjson.loads(ev.value)
                except orjson.JSONDecodeError:
                    data = None
                if not isinstance(data, dict):
                    if topic == s.topics.feedback:
                        await dead_letter_feedback(ev, "not a JSON object")
                    else:  # our own topics: only a foreign producer writes this
                        log.warning("alerting: skipping a message that is not a JSON object on %s", topic,
                                    extra=about_message(ev.message))
                    continue
                if topic == s.topics.enriched:
                    brand = str(data.get("brand") or "-")
                    st = working.get(brand) or states.get(brand)
                    part = data.get("source_partition")
                    st, out = engine.ingest(st, brand, data, source="-" if part is None else str(part))
                    arrivals[brand] = time.time()
                elif topic == s.topics.feedback:
                    report, problem = feedback_report(data)
                    if problem:
                        await dead_letter_feedback(ev, problem)
                        continue
                    brand = data.get("brand") or "-"
                    kind = "misclassification" if is_misclassification(data) else "confirmation"
                    metrics.FEEDBACK.labels(kind).inc()
                    if kind != "misclassification":
                        continue
                    st = working.get(brand) or states.get(brand)
                    st, out = engine.ingest(st, brand, report, source=None, kind="misclassification")
                else:  # tick: a quiet brand's buckets become final; digests that are due go out
                    brand = data.get("brand")
                    if not isinstance(brand, str):
                        continue
                    await flush_digest(brand)
                    st = working.get(brand) or states.get(brand)
                    quiet = time.time() - arrivals.get(brand, 0.0) >= rules.idle_flush_seconds
                    if st is None or not quiet:
                        continue
                    raised_now = idle_flush(brand, st)
                    if raised_now is None:
                        continue
                    out = Outcome(candidates=raised_now)
                count(out)
                working[brand] = st
                raised.setdefault(brand, []).extend(out.candidates)
                brands.add(brand)
                source_event[brand] = ev
            for brand, st in working.items():
                _as_current(source_event[brand])
                await publish(raised.get(brand, ()), brand)
                states[brand] = st

    async def flush_digest(brand: str) -> None:
        due, keep = policy.split_due_digest(digests.get(brand), time.time())
        if due:
            digests[brand] = keep
            results = await dispatcher.deliver_digest(due, policy.digest_recipients(due))
            count_results(results)

    @app.timer(TICK_SECONDS)
    async def tick() -> None:
        now = time.time()
        for brand in list(brands):
            if now - arrivals.get(brand, now) > TICK_ACTIVE_SECONDS:
                brands.discard(brand)  # quiet for an hour: its buckets were flushed long ago; no more ticks
                continue
            await ticks.send(key=brand.encode(), value=orjson.dumps({"brand": brand}))

    def within_sms_budget(channels: dict[str, list[str]], done: set[str]) -> tuple[dict[str, list[str]], list[str]]:
        """Drop SMS recipients over their hourly budget (the alert's e-mail still carries it)."""
        limit = policy.config.sms_per_hour
        if not limit or "sms" not in channels:
            return channels, []
        now = time.time()
        keep, over = [], []
        for r in channels["sms"]:
            if f"sms:{r}" in done:
                keep.append(r)
                continue
            sent = sms_sent.setdefault(r, deque())
            while sent and now - sent[0] > 3600:
                sent.popleft()
            (keep if len(sent) < limit else over).append(r)
            if len(sent) < limit:
                sent.append(now)
        out = dict(channels)
        out["sms"] = keep
        if over and not out.get("email"):
            out["email"] = list(policy.config.routing.fallback.get("email", ()))
        return out, over

    @app.agent(alerts_topic, name="notify")
    async def notify(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                data = orjson.loads(event.value)
                alert = Alert.from_dict(data)
            except Exception as exc:  # noqa: BLE001 - a foreign message on the alerts topic
                log.warning("notify: skipping malformed alert: %s", exc, extra=about_message(event.message))
                continue
            pipe.latest_alerts.append(data)
            # "sms:+33..." = delivered; "~sms:+33..." = started, outcome unknown (a crash came in between)
            marks = set(deliveries.get(alert.id) or ())
            done = {m for m in marks if not m.startswith("~")}
            uncertain = {m[1:] for m in marks if m.startswith("~")} - done
            routes = policy.config.routing.for_severity(alert.severity)
            wanted = data.get("channels")
            channels = {ch: r for ch, r in routes.items() if wanted is None or ch in wanted}
            channels, over = within_sms_budget(channels, done)
            for _ in over:
                metrics.NOTIFICATIONS.labels("sms", "over_budget").inc()
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


def feedback_report(data: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The engine's report from a feedback event, or the reason it cannot be one."""
    for name in ("tweet_id", "correct_label", "reporter"):
        if not isinstance(data.get(name), str) or not data[name]:
            return None, f"{name} must be a non-empty string"
    for name in ("brand", "predicted_label", "text"):
        if data.get(name) is not None and not isinstance(data[name], str):
            return None, f"{name} must be a string"
    try:
        at = to_epoch(data["at"]) if data.get("at") is not None else time.time()
    except (TypeError, ValueError) as exc:
        return None, f"at: {exc}"[:200]
    if not math.isfinite(at):
        return None, "at must be a finite time"
    return {"id": data["tweet_id"], "event_time_ms": int(at * 1000), "text": data.get("text"),
            "predicted_label": data.get("predicted_label"), "correct_label": data["correct_label"],
            "reporter": data["reporter"]}, None


def _as_current(event: Any) -> None:
    """Make ``event`` the current event of this agent task, so table writes use its partition.

    Only the context variable is set (not the stream's attribute, which its buffer task reads).
    """
    _current_event.set(weakref.ref(event))


def count_results(results: list[Any]) -> None:
    for r in results:
        outcome = "skipped" if getattr(r, "skipped", False) else ("delivered" if r.ok else "failed")
        metrics.NOTIFICATIONS.labels(r.channel, outcome).inc()

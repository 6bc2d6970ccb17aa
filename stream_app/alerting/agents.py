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
from .health import BRAND as HEALTH_BRAND
from .health import HealthMonitor
from .notifiers import Dispatcher, defang, one_line
from .policy import Alert
from .reports import PredictionIndex, parse_report, partition_of, resolve
from .summary import Tally, due, expired, merge, render
from .windows import to_epoch

log = logging.getLogger("badbuzz.alerting")
TICK_SECONDS = 10.0
SUMMARY_SECONDS = 60.0
SUMMARY_KEY, SENT = b"summary", "__sent__"  # one key: every partial lands on one partition
HEALTH_SECONDS = 15.0  # health rules judge complete minutes; a quarter of one is soon enough
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

    def internal(name: str) -> faust.TopicT:  # pre-created with the other topics (see app.internal_topics)
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         partitions=parts)

    tick_name = f"{s.app_id}-alert-ticks"
    ticks = internal(tick_name)
    resolved = internal(f"{s.app_id}-feedback-resolved")
    source = app.topic(s.topics.enriched, resolved.get_topic_name(), tick_name, key_type=bytes,
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
            # Publish before saving the state: a crash in between re-publishes the same alert id,
            # which delivery deduplicates.
            await emit(alerts_topic, decision)
            if decision.deferred:
                digests[brand] = policy.add_to_digest(digests.get(brand), decision, at)
            groups[alert.group_key] = decision.state

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
                if not isinstance(data, dict):  # our own topics: only a foreign producer writes this
                    log.warning("alerting: skipping a message that is not a JSON object on %s", topic,
                                extra=about_message(ev.message))
                    continue
                if topic == s.topics.enriched:
                    brand = str(data.get("brand") or "-")
                    st = working.get(brand) or states.get(brand)
                    part = data.get("source_partition")
                    st, out = engine.ingest(st, brand, data, source="-" if part is None else str(part))
                    arrivals[brand] = time.time()
                elif topic == resolved.get_topic_name():  # judged against the predictions (wire_feedback)
                    brand = str(data.get("brand") or "-")
                    st = working.get(brand) or states.get(brand)
                    st, out = engine.ingest(st, brand, data, source=None, kind="misclassification")
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
            routes = policy.config.routing.for_alert(alert)
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
            if pipe.tally is not None and alert.brand != HEALTH_BRAND and any(r.ok and not r.skipped for r in results):
                pipe.tally.alert(time.time(), alert.brand)
            done |= {f"{r.channel}:{r.recipient}" for r in results if r.ok}
            deliveries[alert.id] = sorted(done)

    pipe.agents.update(alerting=alerting, notify=notify)
    wire_feedback(pipe, internal, resolved)
    wire_health(pipe, config, policy, dispatcher)
    wire_summary(pipe, config, dispatcher, internal)


def wire_summary(pipe: Any, config: AlertConfig, dispatcher: Dispatcher, internal: Any) -> None:
    """The daily summary (:mod:`.summary`): every worker drains its tally each minute to
    ``<app>-summary-stats`` under one key, so one partition, hence one worker, adds the partials up in the
    ``daily-summary`` table (day -> totals, ``__sent__`` -> teams served per day) and sends each team's
    summary once; a worker that takes the partition over after a crash finds both in the changelog."""
    cfg = config.summary
    if not cfg.enabled:
        return
    app, s = pipe.app, pipe.settings
    tally = Tally(cfg)
    pipe.tally = tally
    stats = internal(f"{s.app_id}-summary-stats")
    table = app.Table("daily-summary", default=None, partitions=s.partitions, help="day -> summary totals")
    pipe.tables["summary"] = table

    @app.timer(SUMMARY_SECONDS)
    async def drain() -> None:  # also the aggregator's clock: a partial goes out every minute, even empty
        await stats.send(key=SUMMARY_KEY, value=orjson.dumps({"days": tally.drain(time.time())}))

    @app.agent(stats, name="daily-summary")
    async def summarize(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            try:
                days = orjson.loads(ev.value)["days"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("daily-summary: skipping a malformed partial")
                continue
            for day, part in days.items():
                table[day] = merge(table.get(day), part)
            now = time.time()
            sent = dict(table.get(SENT) or {})
            todo = due(cfg, now, sent)
            if todo is not None and table.get(todo[0]) is not None:  # no summary of a day nobody ran through
                day, teams = todo
                for team in teams:
                    report = render(day, team, table.get(day), escape=lambda b: defang(one_line(b)),
                                    at=f"{cfg.at:%H:%M} {cfg.timezone}")
                    results = await dispatcher.deliver_report(report, config.summary_recipients(team))
                    count_results(results)
                    if all(r.ok for r in results):  # a failed delivery is tried again with the next partial
                        sent[day] = [*sent.get(day, []), team]
                        log.info("daily summary %s sent to %s (%d deliveries)", day, team, len(results))
            for old in expired(cfg, now, [d for d in (*sent, *table.keys()) if d != SENT]):
                sent.pop(old, None)
                if table.get(old) is not None:
                    del table[old]
            table[SENT] = sent

    pipe.agents["daily-summary"] = summarize


async def emit(alerts_topic: faust.TopicT, decision: Any) -> None:
    """Publish a decided alert to the alerts topic (the notify agent delivers it), when it is to go out."""
    if decision.deliver:
        alert = decision.alert
        event = alert.to_dict() | {"channels": sorted(decision.channels), "decision": decision.reason}
        await alerts_topic.send(key=alert.id.encode(), value=orjson.dumps(event))
        metrics.ALERTS.labels(alert.rule, alert.severity).inc()


def wire_health(pipe: Any, config: AlertConfig, policy: Any, dispatcher: Dispatcher) -> None:
    """The worker's own health rules (:mod:`.health`), judged each minute on its wall clock.

    Health alerts are about this worker, so their state stays in memory (no table: a timer has no current
    event whose partition a table write could use), their quiet-hours digest too; delivery goes through the
    alerts topic and the notify agent like every other alert.
    """
    if not any(r.enabled for r in config.health.values()):
        return
    monitor = HealthMonitor(config.health)
    pipe.health = monitor
    groups: dict[str, Any] = {}
    digest: list[dict[str, Any]] = []  # deliveries held by quiet hours, e-mailed when they end
    for name in monitor.rules:
        metrics.HEALTH_VALUE.labels(name).set(0)  # exported from the start, before the first minute ends

    @pipe.app.timer(HEALTH_SECONDS)
    async def health() -> None:
        now = time.time()
        lag = pipe.update_lag()
        if lag is not None:
            monitor.observe_lag(now, lag)
        for cand in monitor.evaluate(now):
            alert = Alert.from_candidate(cand, dashboard_url=pipe.settings.public_url)
            decision = policy.decide(groups.get(alert.group_key), alert, now)
            groups[alert.group_key] = decision.state
            await emit(pipe.topics["alerts"], decision)
            if decision.deferred:  # was dropped: the alert went out without its quiet channels' digest
                digest[:] = policy.add_to_digest(digest, decision, now)
        due, keep = policy.split_due_digest(digest, now)
        digest[:] = keep
        if due:
            count_results(await dispatcher.deliver_digest(due, policy.digest_recipients(due)))
        end = int(now // 60)
        for name, rule in monitor.rules.items():
            minutes = min(t.minutes for t in rule.tiers.values())
            metrics.HEALTH_VALUE.labels(name).set(monitor.value(name, end, minutes)[0])


def wire_feedback(pipe: Any, internal: Any, resolved: faust.TopicT) -> None:
    """Reports judged against what the model said (:mod:`.reports`).

    The enrich agent writes each batch's predictions to ``<app>-predictions-by-id``, one message per
    partition of the tweet ids (:func:`.reports.partition_of`); reports are re-sent from the feedback topic
    (any key, any producer) to ``<app>-feedback-by-id`` on their tweet id's partition; one agent reads both
    co-partitioned topics and keeps the ``predictions`` table (one key per message, bounded by age and size,
    changelogged) with an index of tweet ids, so a report finds its tweet on the same worker, after restarts
    too, for one changelog write per batch rather than per tweet.
    Misclassifications go on, keyed by brand, to the alerting agent; unknown or expired tweets and malformed
    reports are dead-lettered with the reason.
    """
    from ..app import dead_letter as dead_letter_record  # the one dead-letter format (app.py wires this module)
    from ..app import dead_letter_of

    app, s = pipe.app, pipe.settings
    by_id = internal(f"{s.app_id}-feedback-by-id")
    predictions_by_id = internal(f"{s.app_id}-predictions-by-id")
    pipe.topics["predictions"] = predictions_by_id
    table = app.Table("predictions", default=None, partitions=s.partitions,
                      help="tweet id -> what the model said (feedback is judged against it)")
    pipe.tables["predictions"] = table
    max_age_ms = int(s.prediction_ttl_hours * 3_600_000)
    index = PredictionIndex(max(1, s.prediction_table_size // s.partitions), max_age_ms)

    async def invalid(ev: Any, problem: str) -> None:
        await pipe.send_dead_letter(*dead_letter_of(ev.message, "invalid_feedback", problem[:500]))
        metrics.FEEDBACK.labels("invalid").inc()

    @app.agent(pipe.topics["feedback"], name="feedback-intake")
    async def intake(stream: faust.StreamT) -> None:
        async for events in acked_batches(stream, 256, 0.05, bootstrap(s.broker)):
            for ev in events:
                try:
                    data = orjson.loads(ev.value)
                except orjson.JSONDecodeError:
                    data = None
                report, problem = parse_report(data, int(time.time() * 1000))
                if problem:
                    await invalid(ev, problem)
                    continue
                m = ev.message  # a dead letter written later names the report's own record
                report["source"] = {"topic": m.topic, "partition": m.partition, "offset": m.offset,
                                    "timestamp_ms": int(m.timestamp * 1000) if m.timestamp else None}
                await by_id.send(key=report["tweet_id"].encode(), value=orjson.dumps(report),
                                 partition=partition_of(report["tweet_id"], s.partitions))

    source = app.topic(predictions_by_id.get_topic_name(), by_id.get_topic_name(), key_type=bytes,
                       value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions)

    @app.agent(source, name="feedback-resolve")
    async def resolve_reports(stream: faust.StreamT) -> None:
        async for events in acked_batches(stream, 256, 0.05, bootstrap(s.broker)):
            for ev in events:
                _as_current(ev)  # table writes go to this event's changelog partition
                msg = ev.message
                try:
                    data = orjson.loads(ev.value)
                except orjson.JSONDecodeError:
                    data = None
                if not isinstance(data, dict):
                    log.warning("feedback-resolve: skipping a malformed record on %s", msg.topic,
                                extra=about_message(msg))
                    continue
                part = msg.partition
                if not index.known(part):  # after a start or a rebalance: from the recovered table
                    index.index(part, ((k, v) for k, v in table.items() if k.startswith(f"{part}:") and v))
                if msg.topic == predictions_by_id.get_topic_name():
                    key = f"{part}:{msg.offset}"  # one key per message: written once, a re-delivery rewrites it
                    table[key] = data
                    for old in index.add(part, key, data):
                        if table.get(old) is not None:
                            del table[old]
                    continue
                tweet_id = str(data.get("tweet_id"))
                where = index.locate(tweet_id)
                if pipe.tally is not None:
                    pipe.tally.batch(time.time(), feedback=1)
                verdict = resolve(data, (table.get(where) or {}).get(tweet_id) if where else None, max_age_ms)
                if verdict.problem:
                    src = data.get("source") or {}
                    code = f"{verdict.kind}_tweet"
                    letter = dead_letter_record(msg.value, code, verdict.problem, key=msg.key,
                                                topic=src.get("topic", msg.topic),
                                                partition=src.get("partition", msg.partition),
                                                offset=src.get("offset", msg.offset),
                                                timestamp_ms=src.get("timestamp_ms"))
                    await pipe.send_dead_letter(msg.key, letter)
                    metrics.FEEDBACK.labels(verdict.kind).inc()
                    continue
                metrics.FEEDBACK.labels(verdict.kind).inc()
                if verdict.overruled:
                    metrics.FEEDBACK.labels("claim_overruled").inc()
                if verdict.report is not None:
                    brand = str(verdict.report.get("brand") or "-")
                    await resolved.send(key=brand.encode(), value=orjson.dumps(verdict.report))

    @app.on_partitions_revoked.connect
    async def _forget(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        # rebuilt from the (recovered) table if this worker gets them back
        index.forget(tp.partition for tp in revoked if tp.topic == predictions_by_id.get_topic_name())

    pipe.agents.update({"feedback-intake": intake, "feedback-resolve": resolve_reports})


def _as_current(event: Any) -> None:
    """Make ``event`` the current event of this agent task, so table writes use its partition.

    Only the context variable is set (not the stream's attribute, which its buffer task reads).
    """
    _current_event.set(weakref.ref(event))


def count_results(results: list[Any]) -> None:
    for r in results:
        outcome = "skipped" if getattr(r, "skipped", False) else ("delivered" if r.ok else "failed")
        metrics.NOTIFICATIONS.labels(r.channel, outcome).inc()

"""``badbuzz demo``: embedded broker + worker + scenario simulator, printing what happens."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

import orjson

from .broker import broker_for, ensure_topics
from .config import Settings
from .events import tweet_key
from .kafkaio import consume_topic, produce_messages
from .kpi import incident_of
from .simulator import Scenario
from .workerproc import WorkerProcess

COLORS = {"negative": "\033[31m", "neutral": "\033[37m", "positive": "\033[32m"}
RESET = "\033[0m"


def line(event: dict) -> str:
    s = event["sentiment"]
    color = COLORS.get(s["label"], "") if sys.stdout.isatty() else ""
    reset = RESET if color else ""
    flags = " ".join(x for x in (
        "CLAIM" if event["is_claim"] else "", event["urgency"].upper() if event["urgency"] != "low" else "",
        incident_of(event) or "") if x)  # fmt: skip
    text = event["text"].replace("\n", " ")[:90]
    return f"{color}[{event['brand'] or '-':>10}] {s['label'][:3].upper()} {s['score']:.2f} {flags:<22}{reset} {text}"


HISTORY_MINUTES = 30


async def _traffic(url: str, settings: Settings, duration: float, rate: float, seed: int) -> None:
    sc = Scenario(seed=seed)
    now = time.time()
    # The same rate as the live chatter: the alert engine learns each brand's normal from it.
    per_minute = max(1, round(rate * 60))
    history = [(tweet_key(t), orjson.dumps(t)) for t in sc.history(now, HISTORY_MINUTES, per_minute)]
    n = await produce_messages(url, settings.topics.tweets, history)
    print(f"-- backfilled {n} tweets of calm history (last {HISTORY_MINUTES} minutes of event time)", flush=True)
    start = time.time()
    storms = {"airparadis": (0.3, 6.0), "freebox": (0.5, 4.0)}  # lost bags in English, then a French outage
    print("-- storms: airparadis (lost bags, English) from 30% of the run, freebox (panne, French) from 50%",
          flush=True)
    n = await produce_messages(url, settings.topics.tweets, _paced(sc.live(start, duration, rate, storms=storms),
                                                                   start))
    print(f"-- live traffic done: {n} tweets", flush=True)


async def _paced(events, start: float):
    """Live tweets carry no created_at (event time = Kafka timestamp) and leave at their offset."""
    for offset, tweet in events:
        delay = start + offset - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tweet.pop("created_at", None)
        yield tweet_key(tweet), orjson.dumps(tweet)


async def _show(url: str, settings: Settings, duration: float, seen: dict) -> None:
    async def enriched() -> None:
        shown = 0
        async for rec in consume_topic(url, settings.topics.enriched, timeout=duration + 30, from_beginning=False):
            event = orjson.loads(rec.value)
            shown += 1
            seen["tweets"] += 1
            seen["negative"] += event["sentiment"]["label"] == "negative"
            if shown % 25 == 0:
                print(line(event), flush=True)  # one tweet in 25: a glimpse of the stream, not all of it

    async def alerts() -> None:
        from .alerting.notifiers import render_sms, render_subject
        from .alerting.policy import Alert

        async for rec in consume_topic(url, settings.topics.alerts, timeout=duration + 120, from_beginning=True):
            data = orjson.loads(rec.value)
            alert = Alert.from_dict(data)
            seen["alerts"].append(data)
            via = ", ".join(data.get("channels") or []) or "no recipients configured"
            print(f"\n=== ALERT {alert.severity.upper()} ({alert.reason}) -> {via} ===\n"
                  f"e-mail subject: {render_subject(alert)}\nSMS: {render_sms(alert)}\n", flush=True)

    await asyncio.gather(enriched(), alerts())


def summary(seen: dict, url: str) -> str:
    """The demo's closing lines: what flowed and what would have been sent."""
    from collections import Counter

    alerts = seen["alerts"]
    per = Counter((a["rule"], a["severity"], a.get("reason", "new")) for a in alerts)
    sms = sum(1 for a in alerts if a["severity"] == "critical" and a.get("status", "firing") == "firing")
    lines = [f"-- summary: {seen['tweets']} tweets enriched ({seen['negative']} negative), "
             f"{len(alerts)} alerts; {sms} would page by SMS (critical), the rest by e-mail"]
    lines += [f"   {rule:18} {sev:8} {reason:10} x{n}" for (rule, sev, reason), n in sorted(per.items())]
    lines.append(f"-- broker was {url}; everything is stopped now")
    return "\n".join(lines)


def run_demo(settings: Settings, *, duration: float = 120.0, rate: float = 5.0, seed: int = 7) -> int:
    log = Path(settings.state_dir) / "demo-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with broker_for(settings.broker) as url:
        asyncio.run(ensure_topics(url, settings.topics.all(), settings.partitions))
        print(f"-- broker {url}; starting worker (log: {log})", flush=True)
        worker = WorkerProcess({"BADBUZZ_BROKER": url, "BADBUZZ_WEB_PORT": str(settings.web_port)}, log,
                               web_host=settings.web_host)
        try:
            worker.start()
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"badbuzz: worker did not start ({str(exc).splitlines()[0]}); see {log}") from None
        print(f"-- dashboard: {settings.public_url}   metrics: {settings.public_url}metrics", flush=True)
        seen: dict = {"tweets": 0, "negative": 0, "alerts": []}
        try:
            async def main() -> None:
                show = asyncio.create_task(_show(url, settings, duration, seen))
                await _traffic(url, settings, duration, rate, seed)
                # Buckets are final a minute (bucket) + the allowed lateness after their tweets: wait for the
                # storm's last ones, as the comms team's phone would.
                print(f"-- waiting {FINAL_WAIT:.0f} s for the last buckets to become final", flush=True)
                await asyncio.sleep(FINAL_WAIT)
                show.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await show

            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()
        print(summary(seen, url), flush=True)
    return 0


FINAL_WAIT = 100.0

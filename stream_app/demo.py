"""``badbuzz demo``: embedded broker + worker + scenario simulator, with a live view of what happens."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.live import Live

from .broker import broker_for, ensure_topics
from .config import Settings
from .demo_view import DemoView
from .events import tweet_key
from .kafkaio import consume_topic, produce_messages
from .simulator import Scenario
from .workerproc import WorkerProcess

HISTORY_MINUTES = 30


async def _traffic(url: str, settings: Settings, duration: float, rate: float, seed: int, console: Console) -> None:
    sc = Scenario(seed=seed)
    now = time.time()
    # The same rate as the live chatter: the alert engine learns each brand's normal from it.
    per_minute = max(1, round(rate * 60))
    history = [(tweet_key(t), orjson.dumps(t)) for t in sc.history(now, HISTORY_MINUTES, per_minute)]
    n = await produce_messages(url, settings.topics.tweets, history)
    console.print(f"-- backfilled {n} tweets of calm history (last {HISTORY_MINUTES} minutes of event time)",
                  markup=False)
    start = time.time()
    storms = {"airparadis": (0.3, 6.0), "freebox": (0.5, 4.0)}  # lost bags in English, then a French outage
    console.print("-- storms: airparadis (lost bags, English) from 30% of the run, freebox (panne, French) from 50%",
                  markup=False)
    n = await produce_messages(url, settings.topics.tweets, _paced(sc.live(start, duration, rate, storms=storms),
                                                                   start))
    console.print(f"-- live traffic done: {n} tweets", markup=False)


async def _paced(events, start: float):
    """Live tweets carry no created_at (event time = Kafka timestamp) and leave at their offset."""
    for offset, tweet in events:
        delay = start + offset - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tweet.pop("created_at", None)
        yield tweet_key(tweet), orjson.dumps(tweet)


async def _show(url: str, settings: Settings, view: DemoView, console: Console) -> None:
    """Feed the view from the enriched and alerts topics; print each alert as it would be sent, above it."""
    async def enriched() -> None:
        async for rec in consume_topic(url, settings.topics.enriched, timeout=math.inf, from_beginning=False):
            view.add_tweet(orjson.loads(rec.value))

    async def alerts() -> None:
        from .alerting.notifiers import render_sms, render_subject
        from .alerting.policy import Alert

        async for rec in consume_topic(url, settings.topics.alerts, timeout=math.inf, from_beginning=True):
            data = orjson.loads(rec.value)
            alert = Alert.from_dict(data)
            view.add_alert(data)
            via = ", ".join(data.get("channels") or []) or "no recipients configured"
            console.print(f"[bold]=== ALERT {alert.severity.upper()} ({alert.reason}) -> {via} ===[/bold]",
                          highlight=False)
            console.print(f"e-mail subject: {render_subject(alert)}\nSMS: {render_sms(alert)}\n", markup=False,
                          highlight=False)

    await asyncio.gather(enriched(), alerts())


def summary(view: DemoView, url: str) -> str:
    """The demo's closing lines: what flowed and what would have been sent."""
    from collections import Counter

    alerts = view.alerts
    per = Counter((a["rule"], a["severity"], a.get("reason", "new")) for a in alerts)
    sms = sum(1 for a in alerts if a["severity"] == "critical" and a.get("status", "firing") == "firing")
    lines = [f"-- summary: {view.tweets} tweets enriched ({view.negative} negative), "
             f"{len(alerts)} alerts; {sms} would page by SMS (critical), the rest by e-mail"]
    lines += [f"   {rule:18} {sev:8} {reason:10} x{n}" for (rule, sev, reason), n in sorted(per.items())]
    lines.append(f"-- broker was {url}; everything is stopped now")
    return "\n".join(lines)


def run_demo(settings: Settings, *, duration: float = 120.0, rate: float = 5.0, seed: int = 7,
             keep: bool = False, final_wait: float = 100.0) -> int:
    """Broker, worker, traffic and the live view; with ``keep`` the worker (and its dashboard) and the broker
    stay up after the traffic until Ctrl-C, which then stops all of them."""
    console = Console() if sys.stdout.isatty() else Console(width=120)  # a pipe or a file: no 80-column wrap
    log = Path(settings.state_dir) / "demo-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    view = DemoView()
    with broker_for(settings.broker) as url:
        asyncio.run(ensure_topics(url, settings.topics.all(), settings.partitions))
        print(f"-- broker {url}; starting worker (log: {log})", flush=True)
        worker = WorkerProcess({"BADBUZZ_BROKER": url, "BADBUZZ_WEB_PORT": str(settings.web_port)}, log,
                               web_host=settings.web_host)
        try:
            try:
                worker.start()
            except (RuntimeError, TimeoutError) as exc:
                raise SystemExit(f"badbuzz: worker did not start ({str(exc).splitlines()[0]}); see {log}") from None
            print(f"-- dashboard: {settings.public_url}   metrics: {settings.public_url}metrics", flush=True)

            async def main() -> None:
                with Live(view.render(), console=console, auto_refresh=False, transient=False) as live:
                    show = asyncio.create_task(_show(url, settings, view, console))
                    redraw = asyncio.create_task(_redraw(live, view))
                    try:
                        view.status = "live traffic"
                        await _traffic(url, settings, duration, rate, seed, console)
                        # Buckets are final a minute (bucket) + the allowed lateness after their tweets: wait for
                        # the storm's last ones, as the comms team's phone would.
                        view.status = f"waiting {final_wait:.0f} s for the last buckets to become final"
                        await asyncio.sleep(final_wait)
                        if keep:
                            view.status = "--keep: traffic done, Ctrl-C stops everything"
                            console.print(f"-- --keep: the worker and its dashboard ({settings.public_url}) keep "
                                          "running; Ctrl-C stops them and the broker", markup=False)
                            await asyncio.Event().wait()  # until Ctrl-C cancels this task
                    finally:
                        for task in (show, redraw):
                            task.cancel()
                        for task in (show, redraw):
                            with contextlib.suppress(asyncio.CancelledError):
                                await task
                        view.status = "done"
                        live.update(view.render(), refresh=True)

            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()
        console.line()
        print(summary(view, url), flush=True)
    return 0


async def _redraw(live: Live, view: DemoView, every: float = 0.5) -> None:
    """Redraw from the event loop (the view's state is only touched here, never from rich's thread)."""
    while True:
        live.update(view.render(), refresh=True)
        await asyncio.sleep(every)


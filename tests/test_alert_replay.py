"""The worker and the offline backtest share one alert engine: the same file gives the same alerts.

A day and a half of generated traffic from two days ago (a calm brand, then one brand's storm) is written
as a CSV, run through ``badbuzz alerts backtest`` (offline, in event time), and produced, in time order, to a
real worker through the embedded broker as fast as it goes (keyed by tweet id over 4 partitions, so the
partitions run ahead of each other). The alert ids (dedup key + severity) must be identical.
"""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
import time

import orjson
import pytest

from stream_app.alerting import load_rules
from stream_app.alerting.policy import Alert
from stream_app.alerting.rules import Candidate
from stream_app.events import tweet_key
from stream_app.kafkaio import consume_topic, produce_messages
from stream_app.simulator import Scenario

pytestmark = pytest.mark.integration


def day_of_traffic(path, now: float) -> list[dict]:
    """36 h of calm chatter for two brands (one tweet every ~40 s each), a storm for one, calm again."""
    sc = Scenario(seed=5, brands={"airparadis": ("airline", "en"), "telcoplus": ("telecom", "en")})
    start = now - 2 * 86_400
    rows = []
    for i in range(36 * 90):
        t = start + i * 40
        rows.append(sc.chatter(t, "airparadis"))
        rows.append(sc.chatter(t + 20, "telcoplus"))
    storm_at = start + 30 * 3600
    rows += [sc.storm_tweet(storm_at + i * 3) for i in range(300)]
    rows = sorted((Scenario._clean(r) for r in rows), key=lambda r: r["created_at"])
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "created_at", "brand", "text"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in ("id", "created_at", "brand", "text")})
    return rows


def test_worker_raises_the_backtests_alerts(broker, start_worker, tmp_path):
    path = tmp_path / "day.csv"
    rows = day_of_traffic(path, time.time())
    out = tmp_path / "backtest.json"
    res = subprocess.run([sys.executable, "-m", "stream_app.cli", "alerts", "backtest", str(path), "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    offline = json.loads(out.read_text())
    expected = {Alert.from_candidate(Candidate(**{**a, "samples": tuple(a["samples"])})).id: a
                for a in offline["alerts"]}
    kinds = {(a["rule"], a["brand"], a["severity"], a["status"]) for a in expected.values()}
    assert ("negative_spike", "airparadis", "critical", "firing") in kinds, kinds
    assert not any(a["brand"] == "telcoplus" for a in expected.values()), "the calm brand stays quiet"

    w = start_worker("replay")
    msgs = [(tweet_key(r), orjson.dumps({k: r[k] for k in ("id", "created_at", "brand", "text")})) for r in rows]
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], msgs))

    async def alerts() -> list[dict]:
        return [orjson.loads(r.value) async for r in
                consume_topic(broker.url, w.env["BADBUZZ_TOPIC_ALERTS"], timeout=3, from_beginning=True)]

    got: dict[str, dict] = {}
    deadline = time.monotonic() + 180 + load_rules().idle_flush_seconds
    while time.monotonic() < deadline and set(got) != set(expected):
        time.sleep(3)
        got = {a["id"]: a for a in asyncio.run(alerts())}
    assert set(got) == set(expected), (
        sorted((a["rule"], a["severity"], a["window_end"], a["reason"]) for a in got.values()),
        sorted((a["rule"], a["severity"], a["window_end"], a["reason"]) for a in expected.values()))
    for alert_id, a in got.items():
        assert (a["observed"], a["threshold"], a["status"]) == (expected[alert_id]["observed"],
                                                                expected[alert_id]["threshold"],
                                                                expected[alert_id]["status"])

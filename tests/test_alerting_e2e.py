"""A bad-buzz storm through the real worker: alerts on the topic, one e-mail and one SMS per recipient.

Real parts only: the embedded broker, a ``badbuzz worker`` process, an SMTP server and a
Twilio-API server on loopback driven by the real twilio SDK.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter

import orjson
import pytest

from stream_app.alerting.windows import to_epoch
from stream_app.events import tweet_key
from stream_app.kafkaio import consume_topic, produce_messages
from stream_app.metrics import REGISTRY
from stream_app.simulator import Scenario

pytestmark = pytest.mark.integration
EMAIL, PHONE = "comms@example.com", "+33612345678"


def storm_traffic(now: float, seed: int = 11, brand: str = "airparadis") -> list[tuple[bytes, bytes]]:
    sc = Scenario(seed=seed)
    msgs = [t for t in sc.history(now - 180, minutes=30, per_minute=24)]
    msgs += [sc.storm_tweet(now - 170 + i * 0.5, brand) for i in range(320)]
    return [(tweet_key(t), orjson.dumps({k: v for k, v in t.items() if k != "storm"})) for t in msgs]


async def read_all(url: str, topic: str, idle: float) -> list[dict]:
    return [orjson.loads(r.value) async for r in consume_topic(url, topic, timeout=idle, from_beginning=True)]


def test_storm_raises_alerts_and_notifies_once(broker, start_worker, smtp_server, twilio_server):
    env = smtp_server.env() | twilio_server.env() | {"BADBUZZ_ALERT_EMAILS": EMAIL, "BADBUZZ_ALERT_PHONES": PHONE}
    w = start_worker("storm", **env)
    msgs = storm_traffic(time.time()) + [(None, b"{broken"), (None, b'{"id": "x", "text": ""}')]
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], msgs))

    deadline = time.monotonic() + 90
    alerts: list[dict] = []
    while time.monotonic() < deadline:
        alerts = asyncio.run(read_all(broker.url, w.env["BADBUZZ_TOPIC_ALERTS"], idle=2))
        if {"negative_spike", "incident_spike"} <= {a["rule"] for a in alerts} and twilio_server.messages:
            break
        time.sleep(2)
    rules = {(a["rule"], a["brand"], a["subject"]) for a in alerts}
    assert ("negative_spike", "airparadis", "negative") in rules, rules
    assert ("incident_spike", "airparadis", "baggage") in rules, rules
    assert all(a["brand"] == "airparadis" for a in alerts if a["rule"] != "critical_claim"), "calm brands stay quiet"
    spikes = Counter(a["severity"] for a in alerts if a["rule"] == "negative_spike")
    assert max(spikes.values()) == 1, f"one negative_spike per severity (warning, then one escalation): {spikes}"
    calm_end = time.time() - 180  # the storm starts 170 s before "now"; the 30 minutes before it are calm
    assert all(to_epoch(a["window_end"]) > calm_end for a in alerts), "no alert during the calm chatter"
    spike = next(a for a in alerts if a["rule"] == "negative_spike")
    assert spike["observed"] > spike["threshold"] >= 10 and spike["baseline"] is not None
    # samples rank negative tweets by reach: a negative chatter tweet of a big account in the same window
    # may take one of the three places, but the storm must dominate them
    about_bags = [any(w in s["text"].lower() for w in ("lost", "bag", "luggage")) for s in spike["samples"]]
    assert 1 <= len(about_bags) <= 3 and sum(about_bags) > len(about_bags) / 2, spike["samples"]
    assert spike["dashboard_url"].startswith("http")

    mails = smtp_server.wait_for(1, timeout=30)
    assert mails and all(m.message["To"] == EMAIL for m in mails)
    assert any("airparadis" in m.subject for m in mails)
    sms = twilio_server.messages
    critical = [a for a in alerts if a["severity"] == "critical"]
    assert len(sms) == len({a["id"] for a in critical}) >= 1, "one SMS per critical alert"
    assert all(s.to == PHONE and len(s.body) <= 320 for s in sms)

    ids = Counter(a["id"] for a in alerts)
    assert max(ids.values()) == 1, "no alert is published twice"

    req = urllib.request.Request(f"{w.url}/feedback", method="POST", data=orjson.dumps(
        {"tweet_id": spike["samples"][0]["id"], "correct_label": "neutral", "reporter": "test"}),
        headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=5).status == 202
    time.sleep(2)
    text = w.get("/metrics").decode()
    assert 'badbuzz_alerts_total{rule="negative_spike"' in text
    assert 'badbuzz_notifications_total{channel="email",outcome="delivered"}' in text
    assert 'badbuzz_notifications_total{channel="sms",outcome="delivered"}' in text
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for family in REGISTRY.collect():
        names = {family.name, f"{family.name}_total", f"{family.name}_count", f"{family.name}_info"}
        assert names & exported, f"metric {family.name} missing from /metrics after storm traffic"


def test_french_outage_storm_alerts_the_french_brand(broker, start_worker, smtp_server, twilio_server):
    """A French ISP's outage: the French rule tables type it (network), whatever the model makes of French."""
    env = smtp_server.env() | twilio_server.env() | {"BADBUZZ_ALERT_EMAILS": EMAIL, "BADBUZZ_ALERT_PHONES": PHONE}
    w = start_worker("storm-fr", **env)
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], storm_traffic(time.time(), 13, "freebox")))
    deadline = time.monotonic() + 90
    alerts: list[dict] = []
    while time.monotonic() < deadline:
        alerts = asyncio.run(read_all(broker.url, w.env["BADBUZZ_TOPIC_ALERTS"], idle=2))
        if any(a["rule"] == "incident_spike" for a in alerts) and twilio_server.messages:
            break
        time.sleep(2)
    spikes = [a for a in alerts if a["rule"] in ("incident_spike", "negative_spike")]
    assert {(a["brand"], a["subject"]) for a in spikes if a["rule"] == "incident_spike"} >= {("freebox", "network")}
    assert all(a["brand"] == "freebox" for a in spikes), "calm brands stay quiet"
    assert any("panne" in s["text"].lower() for a in spikes for s in a["samples"])
    mails = smtp_server.wait_for(1, timeout=30)
    assert any("freebox" in m.subject for m in mails)
    assert twilio_server.messages and all(s.to == PHONE for s in twilio_server.messages)
    # the brand is French ([brands.freebox] in the alert rules): so are its alert texts
    assert any("chez freebox" in m.text() and "Tweets les plus parlants" in m.text() for m in mails)
    assert all("chez freebox" in s.body for s in twilio_server.messages)

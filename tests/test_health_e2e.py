"""The worker watching itself (issue #20), through a real worker, broker, SMTP and Twilio-API servers.

The shipped health windows are 5 to 60 minutes; this test runs the same rules with 2-minute windows and small
volumes (the semantics are unit-tested in tests/alerting/test_health.py) to prove the wiring: signals from
the enrich agent, judged on the worker's clock, routed to each rule's team."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_app.alerting.rules import DEFAULT_RULES_PATH
from stream_app.broker import bootstrap
from stream_app.kafkaio import consume_topic

pytestmark = pytest.mark.integration
DEVOPS_MAIL, DEVOPS_PHONE = "devops@example.com", "+33700000002"
DS_MAIL = "ds@example.com"
HEALTH = """
[health.latency]
min_volume = 5
[health.latency.critical]
threshold = 1000
minutes = 1
[health.error_rate]
min_volume = 10
[health.error_rate.critical]
threshold = 0.05
minutes = 2
[health.error_burst.warning]
threshold = 3
minutes = 2
[health.prediction_mix]
team = "data_science"
min_volume = 20
[health.prediction_mix.warning]
threshold = 0.8
minutes = 2
[health.vocabulary]
team = "data_science"
min_volume = 50
[health.vocabulary.warning]
threshold = 0.15
minutes = 2

"""
ANGRY = ["I hate @airparadis, worst airline ever, absolutely terrible service",
         "@airparadis you lost my bag again, disgusting, never flying with you again",
         "@airparadis worst experience of my life, rude staff and a horrible delay"]
FRENCH = ("@airparadis worst airline ever!! franchement nul, vol annulé sans prévenir, personne pour répondre, "
          "remboursement refusé")


def rules_file(tmp_path: Path) -> Path:
    shipped = DEFAULT_RULES_PATH.read_text()
    start, end = shipped.index("[health.latency]"), shipped.index("[policy]")
    path = tmp_path / "alert_rules.toml"
    path.write_text(shipped[:start] + HEALTH + shipped[end:])
    return path


async def produce_late(url: str, topic: str, messages: list[bytes | None], late_ms: int) -> None:
    """Tweets whose Kafka timestamps are ``late_ms`` old: the worker sees them that late (an upstream delay)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), acks="all")
    await producer.start()
    try:
        for value in messages:
            await producer.send_and_wait(topic, value, key=b"airparadis",
                                         timestamp_ms=int(time.time() * 1000) - late_ms)
    finally:
        await producer.stop()


def test_health_rules_alert_each_team(broker, start_worker, smtp_server, twilio_server, tmp_path):
    env = smtp_server.env() | twilio_server.env() | {
        "BADBUZZ_ALERT_RULES": str(rules_file(tmp_path)), "BADBUZZ_ALERT_EMAILS": "comms@example.com",
        "BADBUZZ_DEVOPS_EMAILS": DEVOPS_MAIL, "BADBUZZ_DEVOPS_PHONES": DEVOPS_PHONE,
        "BADBUZZ_DATASCIENCE_EMAILS": DS_MAIL}
    w = start_worker("health", **env)
    tweets = [orjson.dumps({"id": f"h{i}", "text": f"{ANGRY[i % 3]} #{i}", "brand": "airparadis"}) for i in range(30)]
    tweets += [orjson.dumps({"id": f"f{i}", "text": f"{FRENCH} {i}", "brand": "airparadis"}) for i in range(20)]
    tweets += [b"{broken json"] * 5
    asyncio.run(produce_late(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], tweets, late_ms=4000))

    want = {"latency", "error_rate", "error_burst", "prediction_mix", "vocabulary"}
    deadline, alerts = time.monotonic() + 150, []
    while time.monotonic() < deadline:
        alerts = asyncio.run(_alerts(broker.url, w))
        if want <= {a["rule"] for a in alerts}:
            break
        time.sleep(3)
    by_rule = {a["rule"]: a for a in alerts if a["brand"] == "*"}
    assert want <= set(by_rule), sorted(by_rule)
    assert (by_rule["latency"]["severity"], by_rule["latency"]["team"]) == ("critical", "devops")
    assert by_rule["latency"]["observed"] >= 1000
    assert (by_rule["error_rate"]["severity"], by_rule["error_rate"]["team"]) == ("critical", "devops")
    assert by_rule["error_burst"]["severity"] == "warning"
    assert (by_rule["prediction_mix"]["subject"], by_rule["prediction_mix"]["team"]) == ("negative", "data_science")
    assert by_rule["vocabulary"]["team"] == "data_science" and by_rule["vocabulary"]["observed"] >= 0.15

    mails = smtp_server.wait_for(5, timeout=30)
    to = {m.subject.split("] ")[-1].split(" - ")[0]: m.message["To"] for m in mails if " - *" in m.subject}
    assert to.get("latency") == to.get("error_rate") == to.get("error_burst") == DEVOPS_MAIL, to
    assert to.get("prediction_mix") == to.get("vocabulary") == DS_MAIL, to
    sms = [s for s in twilio_server.messages]
    assert sms and {s.to for s in sms} == {DEVOPS_PHONE}, "critical operational alerts page DevOps"
    metrics = w.get("/metrics").decode()
    assert 'badbuzz_vocabulary_words_total{vocabulary="unknown"}' in metrics
    assert 'badbuzz_health_value{rule="error_rate"}' in metrics


async def _alerts(url: str, w) -> list[dict]:
    return [orjson.loads(r.value) async for r in consume_topic(url, w.env["BADBUZZ_TOPIC_ALERTS"], timeout=2,
                                                                 from_beginning=True)]

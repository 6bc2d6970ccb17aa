"""Feedback that always counts (issue #20): reports carrying only the schema's required fields are judged
against the worker's prediction table, through a real worker, broker, SMTP and Twilio-API servers."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from stream_app.kafkaio import consume_topic, produce_messages

pytestmark = pytest.mark.integration
COMMS_MAIL, COMMS_PHONE = "comms@example.com", "+33612345678"
DS_MAIL, DS_PHONE = "ds@example.com", "+33700000001"
LABELS = ("negative", "neutral", "positive")


async def read_all(url: str, topic: str, idle: float) -> list[dict]:
    return [orjson.loads(r.value) async for r in consume_topic(url, topic, timeout=idle, from_beginning=True)]


def wait_for(fn, timeout: float = 60.0, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out := fn():
            return out
        time.sleep(every)
    return fn()


def test_three_required_field_reports_page_the_data_science_team(broker, start_worker, smtp_server,
                                                                  twilio_server):
    env = smtp_server.env() | twilio_server.env() | {
        "BADBUZZ_ALERT_EMAILS": COMMS_MAIL, "BADBUZZ_ALERT_PHONES": COMMS_PHONE,
        "BADBUZZ_DATASCIENCE_EMAILS": DS_MAIL, "BADBUZZ_DATASCIENCE_PHONES": DS_PHONE}
    w = start_worker("feedback", **env)
    texts = ["@airparadis the crew was lovely, thank you", "@airparadis flight on time for once",
             "@airparadis where is my suitcase??", "@airparadis seat 12C has no legroom", "@airparadis ok"]
    tweets = [(b"airparadis", orjson.dumps({"id": f"fb{i}", "text": t, "brand": "airparadis"}))
              for i, t in enumerate(texts)]
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], tweets))
    enriched = wait_for(lambda: (e := asyncio.run(read_all(broker.url, w.env["BADBUZZ_TOPIC_ENRICHED"], 2)))
                        and len(e) >= len(texts) and e)
    said = {e["id"]: e["sentiment"]["label"] for e in enriched}
    wrong = {i: next(x for x in LABELS if x != said[i]) for i in said}  # a label the model did not give

    def report(tweet_id: str, reporter: str, **extra) -> tuple[None, bytes]:
        return None, orjson.dumps({"tweet_id": tweet_id, "correct_label": wrong.get(tweet_id, "neutral"),
                                   "reporter": reporter, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   **extra})

    topic = w.env["BADBUZZ_TOPIC_FEEDBACK"]
    confirm = (None, orjson.dumps({"tweet_id": "fb4", "correct_label": said["fb4"], "reporter": "ana",
                                   "at": "2026-11-30T12:00:00Z"}))
    asyncio.run(produce_messages(broker.url, topic, [report("fb0", "ana"), report("fb1", "bob"), confirm,
                                                     report("nope", "carl")]))

    def dead_letters() -> list[dict]:
        return [d for d in asyncio.run(read_all(broker.url, w.env["BADBUZZ_TOPIC_DLQ"], 2))
                if d["error"]["code"] == "unknown_tweet"]

    [unknown] = wait_for(dead_letters, timeout=30)
    assert "nope" in unknown["error"]["message"] and unknown["source"]["topic"] == topic
    time.sleep(3)
    alerts = asyncio.run(read_all(broker.url, w.env["BADBUZZ_TOPIC_ALERTS"], 2))
    assert not [a for a in alerts if a["rule"] == "misclassification"], "two reports page nobody"

    # the third reporter claims the model said what they say is right: the table overrules the claim
    asyncio.run(produce_messages(broker.url, topic, [report("fb2", "carl", predicted_label=wrong["fb2"])]))

    def misclassification() -> list[dict]:
        return [a for a in asyncio.run(read_all(broker.url, w.env["BADBUZZ_TOPIC_ALERTS"], 2))
                if a["rule"] == "misclassification"]

    [alert] = wait_for(misclassification, timeout=40)
    assert alert["severity"] == "critical" and alert["team"] == "data_science" and alert["observed"] == 3
    assert {s["id"] for s in alert["samples"]} == {"fb0", "fb1", "fb2"}
    mails = wait_for(lambda: [m for m in smtp_server.messages if "misclassification" in m.subject], timeout=30)
    assert [m.message["To"] for m in mails] == [DS_MAIL], "the data-science team only"
    body = mails[0].text()
    for i in ("fb0", "fb1", "fb2"):
        assert texts[int(i[2:])] in body and f"model said {said[i]}, corrected to {wrong[i]}" in body
    sms = wait_for(lambda: twilio_server.messages, timeout=30)
    assert [s.to for s in sms] == [DS_PHONE]
    time.sleep(2)
    assert len(misclassification()) == 1, "exactly one alert"
    metrics = w.get("/metrics").decode()
    assert 'badbuzz_feedback_total{kind="misclassification"} 3.0' in metrics
    assert 'badbuzz_feedback_total{kind="confirmation"} 1.0' in metrics
    assert 'badbuzz_feedback_total{kind="claim_overruled"} 1.0' in metrics
    assert 'badbuzz_events_dead_lettered_total{reason="unknown_tweet"} 1.0' in metrics


def test_the_prediction_table_survives_a_kill_9(broker, start_worker, smtp_server):
    """The table is rebuilt from its changelog: reports on tweets scored before the crash still resolve."""
    env = smtp_server.env() | {"BADBUZZ_ALERT_EMAILS": COMMS_MAIL, "BADBUZZ_DATASCIENCE_EMAILS": DS_MAIL}
    first = start_worker("feedback-restart", **env)
    tweets = [(b"acme", orjson.dumps({"id": f"k{i}", "text": f"@acme parcel number {i} arrived", "brand": "acme"}))
              for i in range(3)]
    asyncio.run(produce_messages(broker.url, first.env["BADBUZZ_TOPIC_TWEETS"], tweets))
    enriched = wait_for(lambda: (e := asyncio.run(read_all(broker.url, first.env["BADBUZZ_TOPIC_ENRICHED"], 2)))
                        and len(e) >= 3 and e)
    time.sleep(2)  # the predictions topic and the table's changelog are written just after the output
    first.kill()
    second = start_worker("feedback-restart", **env)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reports = [(None, orjson.dumps({"tweet_id": e["id"], "reporter": f"r{i}", "at": now, "correct_label": next(
        x for x in LABELS if x != e["sentiment"]["label"])})) for i, e in enumerate(enriched)]
    asyncio.run(produce_messages(broker.url, second.env["BADBUZZ_TOPIC_FEEDBACK"], reports))
    found = wait_for(lambda: [a for a in asyncio.run(read_all(broker.url, second.env["BADBUZZ_TOPIC_ALERTS"], 2))
                              if a["rule"] == "misclassification"], timeout=60)
    counts = [x for x in second.get("/metrics").decode().splitlines() if x.startswith("badbuzz_feedback_total{")]
    assert len(found) == 1, counts
    alert = found[0]
    assert sorted(s["text"] for s in alert["samples"]) == sorted(e["text"] for e in enriched)
    assert "unknown_tweet" not in second.get("/metrics").decode()

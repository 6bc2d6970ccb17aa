"""The worker's HTTP endpoints on a real worker: health, readiness, metrics, feedback, dashboard API."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest

from stream_app.kafkaio import consume_topic, produce_messages
from stream_app.web.views import FeedbackError, validate_feedback

pytestmark = pytest.mark.integration


def post(url: str, body: bytes, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_feedback_validation_is_strict():
    recent = {"t1": ("united", "negative", "lost bag")}
    ok = validate_feedback({"tweet_id": "t1", "correct_label": "neutral", "reporter": "ana"}, recent)
    assert (ok["brand"], ok["predicted_label"], ok["text"]) == ("united", "negative", "lost bag")
    other = validate_feedback({"tweet_id": "zz", "correct_label": "neutral"}, recent)  # scored by another worker?
    assert other["predicted_label"] is None and other["reporter"] == "dashboard"  # the prediction table judges
    for bad in [[], {"tweet_id": "t1"}, {"tweet_id": "t1", "correct_label": "angry"},
                {"tweet_id": "t1", "correct_label": "neutral", "predicted_label": "meh"},
                {"tweet_id": "t1", "correct_label": "neutral", "x": 1},
                {"tweet_id": "t1", "correct_label": "neutral", "reporter": "r" * 500}]:
        with pytest.raises(FeedbackError):
            validate_feedback(bad, recent)


def test_endpoints_and_feedback_loop(broker, start_worker, tmp_path):
    w = start_worker("web")
    assert json.loads(w.get("/health"))["status"] == "ok"
    assert json.loads(w.get("/ready"))["ready"] is True
    tweets = [(b"airparadis", orjson.dumps({"id": f"w{i}", "text": f"@airparadis my bag is lost again {i}!!",
                                            "brand": "airparadis"})) for i in range(5)]
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], tweets))
    deadline = time.monotonic() + 30
    state = {}
    while time.monotonic() < deadline:
        state = json.loads(w.get("/api/state"))
        if state["brands"] and state["negative"]:
            break
        time.sleep(0.5)
    brand = state["brands"][0]
    assert brand["brand"] == "airparadis" and brand["window"]["tweets"] == 5
    assert state["negative"][0]["id"].startswith("w") and state["model"]["name"]

    for i in range(3):
        status, body = post(f"{w.url}/feedback", orjson.dumps({"tweet_id": f"w{i}", "correct_label": "neutral",
                                                               "reporter": f"comms{i}"}))
        assert status == 202, body
    assert post(f"{w.url}/feedback", b"{not json")[0] == 400
    assert post(f"{w.url}/feedback", b"x" * 20_000)[0] == 413
    assert post(f"{w.url}/feedback", orjson.dumps({"tweet_id": "w0", "correct_label": "angry"}))[0] == 400

    async def feedback_events():
        return [orjson.loads(r.value) async for r in
                consume_topic(broker.url, w.env["BADBUZZ_TOPIC_FEEDBACK"], limit=3, timeout=10)]

    events = asyncio.run(feedback_events())
    assert [e["predicted_label"] for e in events] == ["negative"] * 3
    assert {e["brand"] for e in events} == {"airparadis"}

    async def alerts():
        return [orjson.loads(r.value) async for r in
                consume_topic(broker.url, w.env["BADBUZZ_TOPIC_ALERTS"], limit=1, timeout=20)]

    out = tmp_path / "feedback.csv"
    res = subprocess.run([sys.executable, "-m", "stream_app.cli", "feedback", "export", "-o", str(out)],
                         env=w.env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert {r["tweet_id"] for r in rows} == {"w0", "w1", "w2"}
    assert all(r["correct_label"] == "neutral" and "bag is lost" in r["text"] for r in rows)

    found = asyncio.run(alerts())
    assert found and found[0]["rule"] == "misclassification" and found[0]["observed"] >= 3
    metrics = w.get("/metrics").decode()
    assert 'badbuzz_feedback_total{kind="misclassification"} 3.0' in metrics
    assert "badbuzz_consumer_lag" in metrics and "badbuzz_model_info" in metrics
    page = w.get("/dashboard")
    assert b"id=\"alerts\"" in page and b"id=\"negative\"" in page and b"api/state" in page


def test_token_required_off_loopback(broker, start_worker):
    w = start_worker("secure", BADBUZZ_WEB_HOST="0.0.0.0", BADBUZZ_API_TOKEN="s3cret-token")
    assert post(f"{w.url}/feedback", b"{}")[0] == 401
    assert post(f"{w.url}/feedback", b"{}", token="wrong")[0] == 401
    assert post(f"{w.url}/feedback", b"{}", token="s3cret-token")[0] == 400  # authorized, then validated
    with pytest.raises(urllib.error.HTTPError) as err:
        w.get("/api/state")
    assert err.value.code == 401
    assert json.loads(w.get("/health"))["status"] == "ok"

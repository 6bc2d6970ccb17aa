"""Brand names are unbounded attacker input: the labels the worker keeps apart are not."""

from __future__ import annotations

import asyncio
import json
import time

import orjson
import pytest

from stream_app.cardinality import OTHER, BrandCap
from stream_app.kafkaio import produce_messages


def test_known_brands_always_keep_their_label_and_others_fit_under_the_cap():
    cap = BrandCap(2, known={"united", "freebox"})
    labels = [cap.label(f"spam{i}") for i in range(3000)]
    assert labels[:2] == ["spam0", "spam1"] and set(labels[2:]) == {OTHER}
    assert cap.label("united") == "united" and cap.label("freebox") == "freebox"
    assert cap.label("spam1") == "spam1", "an admitted brand stays admitted"
    assert len({cap.label(f"x{i}") for i in range(10_000)} | {cap.label("united")}) <= 2 + 2


@pytest.mark.integration
def test_a_worker_fed_thousands_of_brands_keeps_its_metrics_and_state_bounded(broker, start_worker):
    w = start_worker("brands", BADBUZZ_MAX_BRANDS="20")
    msgs = [(f"b{i}".encode(), orjson.dumps({"id": f"c{i}", "text": f"@brand{i} awful service", "brand": f"brand{i}"}))
            for i in range(1000)]
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], msgs))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = w.get("/metrics").decode()
        if 'brand="other"' in text and "badbuzz_events_enriched_total 1000.0" in text:
            break
        time.sleep(1)
    series = [line for line in text.splitlines() if line.startswith("badbuzz_sentiment_total{")]
    brands = {line.split('brand="')[1].split('"')[0] for line in series}
    assert OTHER in brands and len(brands) <= 21, sorted(brands)[:30]
    state = json.loads(w.get("/api/state"))
    assert len(state["brands"]) <= 20

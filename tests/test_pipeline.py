"""End to end on the real embedded broker and a real worker process: nothing lost, nothing silent."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import jsonschema
import orjson
import pytest

from stream_app.events import tweet_key
from stream_app.kafkaio import consume_topic, produce_messages

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
BRANDS = ["airparadis", "united", "free"]
TEMPLATES = [
    "@{b} my flight {i} is delayed again, third time this month",
    "thanks @{b} for the upgrade on flight {i}, lovely crew!",
    "@{b} where is my bag? lost since flight {i}, I want a refund",
    "@{b} flight {i} boarding now at gate 4",
    "@{b} panne internet depuis ce matin, toujours rien ({i})",
]


def good_tweets(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        brand = BRANDS[i % len(BRANDS)]
        tweet = {"id": f"ok-{i}", "text": TEMPLATES[i % len(TEMPLATES)].format(b=brand, i=i), "brand": brand,
                 "author": {"id": f"u{i % 17}", "handle": f"user{i % 17}", "followers": (i * 37) % 20000}}
        if i % 3 == 0:
            tweet["created_at"] = "2026-11-18T10:00:00Z"
        out.append((tweet_key(tweet), orjson.dumps(tweet)))
    return out


def malformed(n: int) -> list[tuple[None, bytes]]:
    kinds = [
        b"not json at all",
        b'{"id": "1", "text": "\xff\xfe broken utf8"}',
        b'["a", "list"]',
        b'{"text": "no id"}',
        b'{"id": 12, "text": "numeric id"}',
        b'{"id": "e", "text": ""}',
        orjson.dumps({"id": "big", "text": "x" * 1_000_000}),
        b'{"id": "old", "text": "hi", "created_at": "1970-01-01T00:00:00Z"}',
        b'{"id": "nest", "text": "hi", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"",
    ]
    return [(None, kinds[i % len(kinds)]) for i in range(n)]


async def collect(url: str, topic: str, n: int, timeout: float = 60.0) -> list:
    out = []
    async for rec in consume_topic(url, topic, limit=n, timeout=timeout, from_beginning=True):
        out.append(rec)
    return out


def test_thousand_tweets_and_fifty_malformed(broker, start_worker):
    w = start_worker("e2e")
    topics = {k: w.env[f"BADBUZZ_TOPIC_{k.upper()}"] for k in ("tweets", "enriched", "dlq")}
    good, bad = good_tweets(1000), malformed(50)
    mixed = [m for pair in zip(good[:50], bad, strict=True) for m in pair] + good[50:]

    async def scenario():
        await produce_messages(broker.url, topics["tweets"], mixed)
        return await asyncio.gather(collect(broker.url, topics["enriched"], 1000),
                                    collect(broker.url, topics["dlq"], 50))

    enriched, dead = asyncio.run(scenario())
    assert len(enriched) == 1000 and len(dead) == 50

    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "enriched.schema.json").read_text()))
    events = [orjson.loads(r.value) for r in enriched]
    for e in events:
        validator.validate(e)
    assert {e["id"] for e in events} == {f"ok-{i}" for i in range(1000)}
    assert all(r.key.decode() == orjson.loads(r.value)["brand"] for r in enriched), "output is keyed by brand"
    assert {e["sentiment"]["label"] for e in events} >= {"negative", "positive"}

    dlq_validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "dead-letter.schema.json").read_text()))
    letters = [orjson.loads(r.value) for r in dead]
    for d in letters:
        dlq_validator.validate(d)
        assert d["source"]["topic"] == topics["tweets"] and d["source"]["offset"] >= 0
    codes = {d["error"]["code"] for d in letters}
    assert codes == {"invalid_json", "not_utf8", "not_object", "missing_field", "invalid_field", "empty_text",
                     "text_too_long", "timestamp_out_of_range"}
    assert any("payload_base64" in d for d in letters)

    text = w.get("/metrics").decode()
    assert "badbuzz_events_in_total 1050.0" in text
    assert "badbuzz_events_enriched_total 1000.0" in text
    dead_total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("badbuzz_events_dead_lettered_total{"))
    assert dead_total == 50
    assert w.proc.poll() is None, "the worker keeps running after bad input"


def test_batches_grow_with_the_backlog_and_every_offset_is_committed(broker, start_worker):
    """A backlog is scored in full batches (no 5 ms trickle), and acks with lookahead still commit it all."""
    w = start_worker("eager", BADBUZZ_BATCH_SIZE="256")
    topics = {k: w.env[f"BADBUZZ_TOPIC_{k.upper()}"] for k in ("tweets", "enriched")}

    async def scenario():
        await produce_messages(broker.url, topics["tweets"], good_tweets(1500))
        return await collect(broker.url, topics["enriched"], 1500)

    assert len(asyncio.run(scenario())) == 1500

    def metric(prefix: str) -> list[float]:
        return [float(line.rsplit(" ", 1)[1]) for line in w.get("/metrics").decode().splitlines()
                if line.startswith(prefix)]

    batches, tweets = metric("badbuzz_scoring_batch_size_count")[0], metric("badbuzz_scoring_batch_size_sum")[0]
    assert tweets == 1500
    assert tweets / batches >= 100, f"{batches} batches for a backlog of 1,500 tweets"
    deadline = time.monotonic() + 30
    while (lag := metric("badbuzz_consumer_lag{")) and any(lag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lag and not any(lag), f"offsets left uncommitted: {lag}"


def test_one_brands_storm_is_scored_by_every_worker(broker, start_worker):
    """Tweets keyed by id spread one brand's storm over the workers; enriched events are re-keyed by brand,
    so the brand's alerting state still lives on one partition."""
    workers = [start_worker("spread"), start_worker("spread")]
    topics = {k: workers[0].env[f"BADBUZZ_TOPIC_{k.upper()}"] for k in ("tweets", "enriched")}
    storm = [{"id": f"s-{i}", "text": f"@airparadis flight {i} cancelled, stranded at the gate", "brand": "airparadis"}
             for i in range(600)]

    async def scenario():
        # over ~10 s, so the group settles on both workers while the storm goes on
        await produce_messages(broker.url, topics["tweets"], [(tweet_key(t), orjson.dumps(t)) for t in storm],
                               rate=60)
        return await collect(broker.url, topics["enriched"], 600)

    enriched = asyncio.run(scenario())
    assert {orjson.loads(r.value)["id"] for r in enriched} == {t["id"] for t in storm}
    assert {r.key for r in enriched} == {b"airparadis"} and len({r.partition for r in enriched}) == 1
    per_worker = [sum(float(line.rsplit(" ", 1)[1]) for line in w.get("/metrics").decode().splitlines()
                      if line.startswith("badbuzz_events_enriched_total")) for w in workers]
    assert all(n > 0 for n in per_worker), f"enriched per worker: {per_worker}"

"""The benchmark's building blocks against the embedded broker (figures themselves are not asserted)."""

from __future__ import annotations

import asyncio
import os

import orjson

from stream_app.bench import cpu_seconds, make_tweets, relay_run
from stream_app.kafkaio import consume_topic
from stream_app.scoring.text import normalize_for_model, retweeted_text


def test_cpu_seconds_counts_this_process_work():
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) - before > 0


def test_duplicate_bursts_repeat_earlier_texts():
    """The bench's all-cache-hits run: one text for the model, every tweet its own id."""
    tweets = make_tweets(300, seed=5, duplicate_share=1.0)
    assert len({normalize_for_model(retweeted_text(t["text"])) for t in tweets}) == 1
    assert len({t["id"] for t in tweets}) == 300


def test_relay_floor_moves_every_tweet(broker):
    tweets = make_tweets(400, seed=6)
    result = relay_run(broker.url, "test", tweets, broker.process.pid)
    assert result["tweets_per_s"] > 0 and set(result["cpu_ms_per_tweet"]) == {"relay", "broker"}

    async def read() -> list[dict]:
        return [orjson.loads(r.value) async for r in
                consume_topic(broker.url, "bench-relay-test-out", limit=len(tweets), timeout=10)]

    out = asyncio.run(read())
    assert sorted(e["id"] for e in out) == sorted(t["id"] for t in tweets)
    assert all(e["relayed"] for e in out)

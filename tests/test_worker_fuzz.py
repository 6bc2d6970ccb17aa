"""A bounded fuzz run of a real worker: random messages on the tweet and feedback topics never crash an
agent, and every input message is enriched or dead-lettered (in = enriched + dead-lettered)."""

from __future__ import annotations

import asyncio
import random
import re
import time

import orjson
import pytest

from stream_app.kafkaio import produce_messages

pytestmark = pytest.mark.integration
N = 400


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 1.5e308, float("nan") if rng.random() < 0.1 else 3.14])
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFF), 0x202E, 0]))
                       for _ in range(rng.randrange(0, 40)))
    if kind == 3:
        return rng.choice(["2015-02-24 11:35:52 -0800", "2026-13-45T99:00:00Z", "", "now", "1e999"])
    if kind == 4:
        return rng.randrange(-10**6, 10**13)
    if kind in (5, 6):
        keys = ["id", "text", "created_at", "brand", "lang", "author", "data", "includes", "users", "author_id",
                "followers", "handle", "is_retweet", "retweet_of", "in_reply_to", "tweet_id", "correct_label", "at"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(0, 7))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def random_message(rng: random.Random) -> tuple[bytes | None, bytes]:
    shape = rng.randrange(5)
    if shape == 0:
        return None, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    if shape == 1:  # a tweet with one field made hostile
        tweet = {"id": f"fz-{rng.randrange(10**9)}", "text": "@united lost my bag", "brand": "united"}
        tweet[rng.choice(list(tweet) + ["created_at", "author", "lang"])] = random_value(rng)
        value = tweet
    elif shape == 2:  # a Twitter v2 envelope with random parts
        data = {"id": f"fz-{rng.randrange(10**9)}", "text": "hello"}
        extra = random_value(rng, 2)
        if isinstance(extra, dict):
            data |= extra
        value = {"data": random_value(rng) if rng.random() < 0.3 else data, "includes": random_value(rng, 1)}
    else:
        value = random_value(rng)
    raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS) if not isinstance(value, float) else b"1.0"
    key = rng.choice([None, b"", b"k", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))])
    return key, raw


def test_random_messages_never_crash_an_agent_and_nothing_is_lost(broker, start_worker):
    w = start_worker("fuzz")
    rng = random.Random(20261130)
    tweets = [random_message(rng) for _ in range(N)]
    feedback = [random_message(rng) for _ in range(N // 2)]
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], tweets))
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_FEEDBACK"], feedback))
    deadline = time.monotonic() + 90
    counts: dict[str, float] = {}
    while time.monotonic() < deadline:
        m = w.get("/metrics").decode()
        counts = {name: sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", m, re.M))
                  for name in ("badbuzz_events_in_total", "badbuzz_events_enriched_total",
                               "badbuzz_events_dead_lettered_total")}
        bad_feedback = re.findall(r'^badbuzz_events_dead_lettered_total{reason="(?:invalid_feedback|unknown_tweet|'
                                  r'expired_tweet)"} (\S+)$', m, re.M)
        counts["badbuzz_events_dead_lettered_total"] -= sum(float(v) for v in bad_feedback)  # not input tweets
        counts["feedback_dead_lettered"] = sum(float(v) for v in bad_feedback)
        if counts["badbuzz_events_in_total"] >= N and counts["badbuzz_events_in_total"] == (
                counts["badbuzz_events_enriched_total"] + counts["badbuzz_events_dead_lettered_total"]):
            break
        time.sleep(1)
    assert counts["badbuzz_events_in_total"] == N, counts
    assert counts["badbuzz_events_enriched_total"] + counts["badbuzz_events_dead_lettered_total"] == N, counts
    assert counts["feedback_dead_lettered"] > 0, "random feedback is dead-lettered with its reason"
    log = w.tail(200_000)
    assert "Traceback" not in log and "crashed" not in log.lower(), log[-3000:]
    assert orjson.loads(w.get("/health"))["status"] == "ok"

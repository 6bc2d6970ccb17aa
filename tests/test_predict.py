"""``POST /predict`` and ``GET /model/info`` on a real worker (embedded broker, loopback), and their pure parts."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator

import jsonschema
import orjson
import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.kafkaio import consume_topic, produce_messages
from stream_app.parsing import HARD_MAX_TEXT
from stream_app.web.predict import MAX_ITEMS, MAX_PREDICT_BODY, PredictError, parse_predict_request
from stream_app.web.ratelimit import RateLimit, parse_rate
from stream_app.workerproc import WorkerProcess

from .conftest import ROOT, worker_process

JSON = {"Content-Type": "application/json"}


def call(url: str, body: object | bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], dict]:
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers=(JSON if data is not None else {}) | (headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"{}")


# -- pure parts ---------------------------------------------------------------------------------------
def test_request_shapes_and_per_item_reasons():
    one = parse_predict_request({"text": "my bag is lost", "brand": "@AirParadis", "lang": "en"}, max_text=4000)
    assert [(t["id"], t["brand"], t["lang"]) for t in one] == [("predict-0", "airparadis", "en")]
    batch = parse_predict_request({"brand": "freebox", "tweets": [
        "panne internet", {"id": "x1", "text": "hello", "brand": "orange"}, {"text": "no id given"}]}, max_text=4000)
    assert [(t["id"], t["brand"]) for t in batch] == [("predict-0", "freebox"), ("x1", "orange"),
                                                      ("predict-2", "freebox")]
    with pytest.raises(PredictError) as err:
        parse_predict_request({"tweets": ["fine", "", 7, {"text": "x", "created_at": "yesterday"}]}, max_text=4000)
    assert [(i["index"], i["code"]) for i in err.value.items] == [(1, "empty_text"), (2, "invalid_field"),
                                                                   (3, "invalid_field")]
    for bad in ([], {"text": "a", "tweets": ["b"]}, {}, {"tweets": []}, {"tweets": "abc"}, {"text": "a", "x": 1},
                {"tweets": ["a"] * (MAX_ITEMS + 1)}, {"text": "a", "brand": 3}):
        with pytest.raises(PredictError):
            parse_predict_request(bad, max_text=4000)


def test_rate_limit_counts_per_key_and_says_when_to_retry():
    limit = RateLimit("3/minute", "t")
    assert [limit.retry_after("a") for _ in range(3)] == [0, 0, 0]
    wait = limit.retry_after("a")
    assert 1 <= wait <= 60
    assert limit.retry_after("b") == 0  # another client has its own window
    both = RateLimit("2/second;3/minute", "t2")  # every limit of a rule holds
    assert [both.retry_after("a") for _ in range(3)] == [0, 0, 1]
    with pytest.raises(ValueError):
        parse_rate("lots")


# -- a real worker -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    w = worker_process(broker.url, tmp_path_factory.mktemp("predict"), "predict").start()
    yield w
    w.stop()


@pytest.mark.integration
def test_predict_one_text_through_the_enrichment_path(worker):
    status, _, body = call(f"{worker.url}/predict", {"text": "@airparadis my bag is LOST and nobody answers!!",
                                                     "brand": "airparadis"})
    assert status == 200, body
    (p,) = body["predictions"]
    assert p["id"] == "predict-0" and p["brand"] == "airparadis" and p["lang"] == "en"
    assert p["sentiment"]["label"] == "negative" and p["sentiment"]["reliable"] is True
    assert set(p["sentiment"]["probs"]) == {"negative", "neutral", "positive"}
    assert p["incident"] == "baggage" and p["topics"] and isinstance(p["is_claim"], bool)
    assert p["urgency"] in ("low", "medium", "high", "critical") and 0 <= p["confidence"] <= 1
    assert body["model"]["name"] and body["rules_version"]


@pytest.mark.integration
def test_predict_a_batch_and_the_cache_is_the_agents(worker):
    tweets = [f"flight {i} was great, thanks team" for i in range(40)] + [
        {"id": "fr-1", "text": "panne internet depuis ce matin, inadmissible", "brand": "freebox", "lang": "fr"}]
    status, _, body = call(f"{worker.url}/predict", {"tweets": tweets})
    assert status == 200, body
    preds = body["predictions"]
    assert len(preds) == 41 and preds[-1]["id"] == "fr-1" and preds[-1]["sentiment"]["reliable"] is False
    assert all(p["sentiment"]["label"] == "positive" for p in preds[:40])
    metrics = urllib.request.urlopen(f"{worker.url}/metrics", timeout=5).read().decode()
    assert re.search(r'^badbuzz_predict_requests_total\{outcome="ok"\} [1-9]', metrics, re.M)
    assert re.search(r"^badbuzz_predict_tweets_total [1-9]", metrics, re.M)
    assert "badbuzz_predict_seconds_bucket" in metrics
    hits = float(re.search(r'^badbuzz_sentiment_cache_lookups_total\{result="hit"\} (\S+)', metrics, re.M)[1])
    assert call(f"{worker.url}/predict", {"tweets": tweets})[0] == 200
    metrics = urllib.request.urlopen(f"{worker.url}/metrics", timeout=5).read().decode()
    assert float(re.search(r'^badbuzz_sentiment_cache_lookups_total\{result="hit"\} (\S+)', metrics,
                           re.M)[1]) >= hits + 41


@pytest.mark.integration
def test_invalid_requests_are_400_with_each_reason_never_500(worker):
    url = f"{worker.url}/predict"
    status, _, body = call(url, {"tweets": ["ok text", "", {"text": 5}, None]})
    assert status == 400
    assert [(i["index"], i["code"]) for i in body["items"]] == [(1, "empty_text"), (2, "invalid_field"),
                                                                 (3, "invalid_field")]
    assert "text must be a string" in body["items"][1]["message"]
    assert call(url, b"{not json")[0] == 400
    assert call(url, [1, 2])[0] == 400
    assert call(url, {"tweets": ["x"] * (MAX_ITEMS + 1)})[0] == 400
    assert call(url, b"x" * (MAX_PREDICT_BODY + 1))[0] == 413
    assert call(url, b'{"text": "hi"}', headers={"Content-Type": "text/plain"})[0] == 415
    assert call(url, {"text": "hi"}, headers={"Origin": "http://evil.example"})[0] == 403
    # a full batch of long posts fits the body bound
    status, _, body = call(url, {"tweets": ["a long post about my delayed flight " * 100] * MAX_ITEMS})
    assert status == 200 and len(body["predictions"]) == MAX_ITEMS


@pytest.mark.integration
def test_model_info(worker):
    status, _, info = call(f"{worker.url}/model/info")
    assert status == 200
    assert info["model"]["name"] == "badbuzz-sentiment-minilm" and info["model"]["version"]
    assert info["model"]["languages"] == ["en"] and info["model"]["labels"] == ["negative", "neutral", "positive"]
    assert info["model"]["model_card"].endswith("MODEL_CARD.md")
    assert 0.5 < info["metrics"]["tweeteval_val"]["macro_f1"] < 1
    assert 0.5 < info["metrics"]["airline_heldout"]["negative_recall"] <= 1
    assert info["rules"]["version"] and "airline" in info["rules"]["packs"]
    assert call(f"{worker.url}/model/info", headers={"Host": f"evil.example:{worker.port}"})[0] == 403


@pytest.mark.integration
def test_token_off_loopback_and_rate_limit(start_worker):
    w = start_worker("predict-public", BADBUZZ_WEB_HOST="0.0.0.0", BADBUZZ_API_TOKEN="s3cret-token",
                     BADBUZZ_PREDICT_RATE_LIMIT="3/minute")
    url, auth = f"{w.url}/predict", {"Authorization": "Bearer s3cret-token"}
    assert call(url, {"text": "hello"})[0] == 401
    assert call(url, {"text": "hello"}, {"Authorization": "Bearer wrong"})[0] == 401
    assert call(f"{w.url}/model/info")[0] == 401
    assert call(f"{w.url}/model/info", headers=auth)[0] == 200
    assert [call(url, {"text": f"hello {i}"}, auth)[0] for i in range(3)] == [200, 200, 200]
    status, headers, body = call(url, {"text": "one too many"}, auth)
    assert status == 429 and "retry later" in body["error"]
    # whole seconds until the window's oldest hit leaves it: about a minute here, not a token bucket's "1"
    assert re.fullmatch(r"[1-9]\d*", headers["Retry-After"]) and 30 <= int(headers["Retry-After"]) <= 60
    metrics = urllib.request.urlopen(f"{w.url}/metrics", timeout=5).read().decode()
    assert 'badbuzz_predict_requests_total{outcome="rate_limited"} 1.0' in metrics
    assert 'badbuzz_predict_requests_total{outcome="denied"} 2.0' in metrics


@pytest.mark.integration
def test_long_posts_are_truncated_by_the_api_and_the_agent(broker, worker):
    long_text = "my flight was cancelled and nobody answers " * 200  # 8,600 characters > BADBUZZ_MAX_TEXT
    status, _, body = call(f"{worker.url}/predict", {"text": long_text, "brand": "united"})
    (p,) = body["predictions"]
    assert status == 200 and p["truncated"] is True and len(p["text"]) == 4000 and p["incident"] == "cancellation"
    env = worker.env
    asyncio.run(produce_messages(broker.url, env["BADBUZZ_TOPIC_TWEETS"], [
        (b"long-1", orjson.dumps({"id": "long-1", "text": long_text, "brand": "united"})),
        (b"huge-1", orjson.dumps({"id": "huge-1", "text": "x" * (HARD_MAX_TEXT + 1)}))]))

    async def first(topic: str) -> dict:
        return [orjson.loads(r.value) async for r in consume_topic(broker.url, topic, limit=1, timeout=30)][0]

    event = asyncio.run(first(env["BADBUZZ_TOPIC_ENRICHED"]))
    assert event["id"] == "long-1" and event["truncated"] is True and len(event["text"]) == 4000
    jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "enriched.schema.json").read_text())).validate(
        event)
    letter = asyncio.run(first(env["BADBUZZ_TOPIC_DLQ"]))
    assert letter["error"]["code"] == "text_too_long" and letter["source"]["key"] == "huge-1"


def test_coalescer_scores_concurrent_requests_together_and_keeps_failures_apart(enricher):
    from concurrent.futures import ThreadPoolExecutor

    from stream_app.web.predict import Coalescer

    calls: list[int] = []

    def enrich(tweets: list[dict]) -> list[dict]:
        calls.append(len(tweets))
        return enricher.enrich(tweets)

    requests = [[{"id": f"c{i}-{j}", "text": f"my flight {i} was late again ({j})", "lang": "en"}
                 for j in range(i % 3 + 1)] for i in range(12)]
    broken = [{"id": "broken"}]  # no text: the real enricher raises on it

    async def main() -> list:
        coalescer = Coalescer(enrich, executor)
        return await asyncio.gather(*(coalescer.enrich(r) for r in [*requests[:6], broken, *requests[6:]]),
                                    return_exceptions=True)

    with ThreadPoolExecutor(1) as executor:
        out = asyncio.run(main())
    assert isinstance(out[6], KeyError)
    answers = out[:6] + out[7:]
    assert [[e["id"] for e in a] for a in answers] == [[t["id"] for t in r] for r in requests]
    # all 13 requests were queued before the first turn: one model call for them, which fails on the broken
    # one, then each request scored alone so that only the broken one fails
    order = [*requests[:6], broken, *requests[6:]]
    assert calls == [sum(map(len, order))] + [len(r) for r in order]

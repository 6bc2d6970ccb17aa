"""Broker outage and consumer-group rebalances on the real embedded broker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error

import orjson
import pytest

from stream_app.bench import make_tweets
from stream_app.broker import EmbeddedBroker
from stream_app.events import tweet_key
from stream_app.kafkaio import consume_topic, produce_messages
from stream_app.workerproc import WorkerProcess

from ..conftest import worker_process

pytestmark = pytest.mark.integration


def status(worker: WorkerProcess, path: str) -> int:
    try:
        worker.get(path)
        return 200
    except urllib.error.HTTPError as err:
        return err.code


def test_worker_survives_broker_outage_and_reports_not_ready(tmp_path):
    broker = EmbeddedBroker().start()
    worker = worker_process(broker.url, tmp_path, "outage").start()
    try:
        assert status(worker, "/ready") == 200
        broker.stop()  # memory storage: everything on it is gone too
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and status(worker, "/ready") != 503:
            time.sleep(0.5)
        assert status(worker, "/ready") == 503
        body = json.loads(worker.get("/health"))
        assert body["status"] == "ok"
        time.sleep(30)  # a 30 s outage
        assert worker.proc.poll() is None, "the worker must not exit when the broker goes away"
        assert status(worker, "/health") == 200
        broker = EmbeddedBroker(port=broker.port).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and status(worker, "/health") != 200:
            time.sleep(0.5)
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        broker.stop()


def test_worker_joining_and_leaving_loses_nothing(broker, start_worker):
    first = start_worker("rebal")
    topics = {k: first.env[f"BADBUZZ_TOPIC_{k.upper()}"] for k in ("tweets", "enriched")}
    tweets = make_tweets(1500, seed=31)
    msgs = [(tweet_key(t), orjson.dumps(t)) for t in tweets]
    producer = threading.Thread(target=lambda: asyncio.run(produce_messages(broker.url, topics["tweets"], msgs,
                                                                            rate=60)))
    producer.start()
    time.sleep(4)
    second = start_worker("rebal")  # joins: partitions move
    time.sleep(8)
    second.stop()  # leaves: partitions move back
    producer.join()

    async def ids() -> set[str]:
        return {orjson.loads(r.value)["id"] async for r in
                consume_topic(broker.url, topics["enriched"], timeout=3, from_beginning=True)}

    want = {t["id"] for t in tweets}
    deadline = time.monotonic() + 120
    seen: set[str] = set()
    while time.monotonic() < deadline and not want <= seen:
        seen = asyncio.run(ids())
    assert want <= seen, f"{len(want - seen)} of {len(want)} tweets lost across the rebalance"
    assert first.proc.poll() is None

"""kill -9 a worker mid-storm, restart it: every tweet enriched at least once, counts recovered from
the changelogs, and no alert delivered twice (real broker, SMTP server and Twilio-API server)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import orjson
import pytest

from stream_app.bench import make_tweets
from stream_app.broker import EmbeddedBroker
from stream_app.events import tweet_key
from stream_app.kafkaio import consume_topic, group_lag, produce_messages

from ..conftest import worker_process
from ..test_alerting_e2e import EMAIL, PHONE, storm_traffic

pytestmark = pytest.mark.integration


async def ids_in(url: str, topic: str, idle: float = 2.0) -> list[str]:
    return [orjson.loads(r.value)["id"] async for r in consume_topic(url, topic, timeout=idle, from_beginning=True)]


def wait_for_ids(url: str, topic: str, want: set[str], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = asyncio.run(ids_in(url, topic))
        if want <= set(seen):
            break
        time.sleep(1)
    return seen


@pytest.fixture
def broker():
    """A broker of its own: the crash is judged without the session broker's accumulated topics and groups."""
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def start_worker(broker, tmp_path):
    workers = []

    def start(name: str, **env: str):
        workers.append(worker_process(broker.url, tmp_path, name, env).start())
        return workers[-1]

    yield start
    for w in workers:
        w.stop()


def test_kill_9_during_storm_loses_nothing_and_notifies_once(broker, start_worker, smtp_server, twilio_server):
    env = smtp_server.env() | twilio_server.env() | {"BADBUZZ_ALERT_EMAILS": EMAIL, "BADBUZZ_ALERT_PHONES": PHONE,
                                                     "BADBUZZ_BATCH_SIZE": "16", "BADBUZZ_LOG_LEVEL": "info"}
    first = start_worker("crash", **env)
    topics = {k: first.env[f"BADBUZZ_TOPIC_{k.upper()}"] for k in ("tweets", "enriched", "alerts")}
    # a storm with history, then unique tweets (no cache help) so that the kill lands mid-stream
    msgs = storm_traffic(time.time(), seed=21)
    msgs += [(tweet_key(t), orjson.dumps(t)) for t in make_tweets(1500, seed=22)]
    want = {orjson.loads(v)["id"] for _, v in msgs}
    storm_ids = {orjson.loads(v)["id"] for _, v in msgs if orjson.loads(v)["brand"] == "airparadis"}
    asyncio.run(produce_messages(broker.url, topics["tweets"], msgs))

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and enriched_so_far(first) < 1200:
        time.sleep(0.1)
    first.kill()  # SIGKILL mid-stream: no commit, no flush, no goodbye
    before = asyncio.run(ids_in(broker.url, topics["enriched"], 1))
    assert 0 < len(set(before)) < len(want), "the kill must land mid-stream"

    second = start_worker("crash", **env)
    seen = wait_for_ids(broker.url, topics["enriched"], want, timeout=180)
    lag = [x for x in second.get("/metrics").decode().splitlines()
           if x.startswith(("badbuzz_consumer_lag{", "badbuzz_events_in_total ", "badbuzz_events_enriched_total "))]
    assert want <= set(seen), (f"{len(want - set(seen))} tweets never enriched; restarted worker: {lag}; "
                               f"{asyncio.run(where(broker.url, topics, want - set(seen)))}")
    duplicates = len(seen) - len(set(seen))

    state = json.loads(second.get("/api/state"))
    brand = next(b for b in state["brands"] if b["brand"] == "airparadis")
    counted = sum(p["tweets"] for p in brand["series"])
    # at-least-once: replayed tweets may be counted twice, but nothing counted before the crash is lost
    assert len(storm_ids) - 60 <= counted <= len(storm_ids) + duplicates, (counted, len(storm_ids), duplicates)

    # let the notifier catch up (bounded: a lost SMS still fails), then a moment for any duplicate to show
    deadline = time.monotonic() + 30
    while True:
        alerts = [orjson.loads(r) for r in asyncio.run(_raw(broker.url, topics["alerts"]))]
        critical_ids = {a["id"] for a in alerts if a["severity"] == "critical"}
        if len(twilio_server.messages) >= len(critical_ids) or time.monotonic() > deadline:
            break
        time.sleep(1)
    time.sleep(3)
    alerts = [orjson.loads(r) for r in asyncio.run(_raw(broker.url, topics["alerts"]))]
    assert {"negative_spike", "incident_spike"} <= {a["rule"] for a in alerts}
    # a resend after a crash between SMTP acceptance and the confirmation keeps the Message-ID (one mail
    # in the mailbox); two different Message-IDs for one alert id would be a real duplicate
    mails = Counter(m.message["X-Badbuzz-Alert-Id"] for m in {m.message["Message-ID"]: m
                                                              for m in smtp_server.messages}.values())
    assert mails and max(mails.values()) == 1, f"an alert was e-mailed twice: {mails}"
    critical_ids = {a["id"] for a in alerts if a["severity"] == "critical"}
    texted = Counter(m.body.rsplit("alert=", 1)[-1] for m in twilio_server.messages)
    assert len(twilio_server.messages) == len(critical_ids), (
        f"one SMS per critical alert id, even after a crash: {len(twilio_server.messages)} SMS for "
        f"{len(critical_ids)} ids; never texted {sorted(critical_ids - set(texted))}, twice {texted.most_common(2)}")
    refilled = second.log.read_text(errors="replace").count("were dropped by the consumer")
    # every partition's offsets end committed (a restart would replay the rest); the gauge shows the same.
    # It trails processing by up to one commit interval, hence the wait.
    group = second.env["BADBUZZ_APP_ID"]
    lag_seen = lag = committed_lag(second)
    broker_lag = asyncio.run(group_lag(broker.url, group, topics["tweets"]))
    deadline = time.time() + 20
    while (any(lag) or any(broker_lag.values())) and time.time() < deadline:
        time.sleep(1)
        lag, broker_lag = committed_lag(second), asyncio.run(group_lag(broker.url, group, topics["tweets"]))
    assert not any(broker_lag.values()), (f"uncommitted input after every tweet was enriched: {broker_lag} (gauge "
                                          f"{lag}); restarted worker: {consumer_story(second)}")
    assert not any(lag), f"input lag gauge stays {lag} after every tweet was enriched and committed"
    print(f"crash test: in={len(want)} enriched={len(seen)} unique={len(set(seen))} duplicates={duplicates} "
          f"alerts={len(alerts)} emails={len(smtp_server.messages)} distinct e-mails={sum(mails.values())} "
          f"sms={len(twilio_server.messages)} gaps refilled after restart={refilled} input lag when all was enriched="
          f"{lag_seen}, then {lag}")


def consumer_story(worker) -> str:
    """Failure context: the worker's assignment, commit and repair log lines."""
    keys = ("assign", "revok", "commit", "rebalanc", "generation", "seek", "dropped", "reading", "discard", "error")
    lines = [x[:300] for x in worker.log.read_text(errors="replace").splitlines() if any(k in x.lower() for k in keys)]
    return "\n".join(lines[-60:])


def committed_lag(worker) -> list[float]:
    return [float(x.split()[-1]) for x in worker.get("/metrics").decode().splitlines()
            if x.startswith("badbuzz_consumer_lag{")]


def enriched_so_far(worker) -> float:
    for line in worker.get("/metrics").decode().splitlines():
        if line.startswith("badbuzz_events_enriched_total "):
            return float(line.split()[1])
    return 0.0


async def where(url: str, topics: dict[str, str], missing: set[str]) -> str:
    """Failure context: where the missing tweets sit in the input, and how far each enriched partition reads."""
    spots: dict[int, list[int]] = {}
    async for r in consume_topic(url, topics["tweets"], timeout=2):
        if orjson.loads(r.value)["id"] in missing:
            spots.setdefault(r.partition, []).append(r.offset)
    read: dict[int, int] = {}
    async for r in consume_topic(url, topics["enriched"], timeout=2):
        read[r.partition] = max(read.get(r.partition, -1), r.offset)
    return (f"missing input offsets by partition: { {p: (min(o), max(o), len(o)) for p, o in spots.items()} }; "
            f"last enriched offset read per partition: {read}")


async def _raw(url: str, topic: str) -> list[bytes]:
    return [r.value async for r in consume_topic(url, topic, timeout=2, from_beginning=True)]

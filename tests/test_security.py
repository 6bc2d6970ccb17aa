"""The findings of the abuse test (issue 19), each reproduced against a real worker on loopback.

One worker (default settings: bound to 127.0.0.1, no token) serves every check here, to spare the
shared cores a model load per test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.kafkaio import consume_topic, group_lag, produce_messages
from stream_app.web.views import is_loopback
from stream_app.workerproc import WorkerProcess

from .conftest import worker_process

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    w = worker_process(broker.url, tmp_path_factory.mktemp("sec"), "sec").start()
    yield w
    w.stop()


def request(url: str, *, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def listening(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on ``port``, from /proc/net/tcp and tcp6."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr)  # 32-bit words in host (little-endian) order
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(words)
            found.add(str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip))
    return found


# -- finding 1: bind exactly the configured host; token decision from the bound address ------------------
def test_default_worker_listens_on_loopback_only(worker):
    assert listening(worker.port) == {"127.0.0.1"}


def test_loopback_is_decided_from_addresses_not_names():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("")
    assert not is_loopback("192.0.2.7") and not is_loopback("no-such-host.invalid")


# -- finding 3: Faust's own table and router endpoints are off ----------------------------------------
@pytest.mark.parametrize("path", ["/table/", "/table/alert-deliveries/", "/table/alert-deliveries/x/",
                                  "/router/", "/router/alert-deliveries/x/"])
def test_faust_table_and_router_endpoints_are_off(worker, path):
    assert request(worker.url + path)[0] in (401, 404)


# -- finding 4: CSRF, DNS rebinding, tokens in URLs, bad tokens ----------------------------------------
FEEDBACK = orjson.dumps({"tweet_id": "sec-fb", "correct_label": "neutral", "predicted_label": "negative",
                         "brand": "secbrand"})
JSON = {"Content-Type": "application/json"}


def test_feedback_refuses_cross_site_and_rebinding(worker):
    url = f"{worker.url}/feedback"
    assert request(url, method="POST", body=FEEDBACK, headers={"Content-Type": "text/plain"})[0] == 415
    assert request(url, method="POST", body=FEEDBACK,
                   headers=JSON | {"Origin": "http://evil.example"})[0] == 403
    assert request(url, method="POST", body=FEEDBACK, headers=JSON | {"Origin": "null"})[0] == 403
    assert request(url, method="POST", body=FEEDBACK,
                   headers=JSON | {"Host": f"evil.example:{worker.port}"})[0] == 403
    assert request(f"{worker.url}/api/state", headers={"Host": f"evil.example:{worker.port}"})[0] == 403
    # The dashboard's own same-origin posts, and clients that send no Origin, are accepted.
    for origin in (f"http://127.0.0.1:{worker.port}", f"http://localhost:{worker.port}"):
        assert request(url, method="POST", body=FEEDBACK, headers=JSON | {"Origin": origin})[0] == 202
    assert request(url, method="POST", body=FEEDBACK, headers=JSON | {"Host": f"localhost:{worker.port}"})[0] == 202


# -- finding 5: feedback is rate-limited per brand and per client ------------------------------------------
def test_feedback_flood_is_rate_limited(worker):
    url = f"{worker.url}/feedback"

    def post(brand: str) -> tuple[int, dict[str, str]]:
        body = orjson.dumps({"tweet_id": f"fl-{brand}", "correct_label": "neutral", "predicted_label": "negative",
                             "brand": brand})
        status, headers, _ = request(url, method="POST", body=body, headers=JSON)
        return status, headers

    one_brand = [post("floodair") for _ in range(25)]
    accepted = sum(status == 202 for status, _ in one_brand)
    assert 10 <= accepted <= 11, accepted  # the brand's burst (plus at most one refill)
    assert all(status == 429 and int(h["Retry-After"]) >= 1 for status, h in one_brand[accepted:])
    many_brands = [post(f"brand{i}")[0] for i in range(50)]
    assert many_brands.count(429) >= 40, many_brands  # the client's burst is spent: 50 brands cannot flood


def test_dashboard_sends_security_headers(worker):
    status, headers, body = request(f"{worker.url}/dashboard")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp.split(
        "script-src")[1].split(";")[0]
    script = re.search(rb"<script>(.*?)</script>", body, re.S).group(1)
    assert f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'" in csp


def test_token_only_from_the_authorization_header(start_worker):
    w = start_worker("sectoken", BADBUZZ_WEB_HOST="0.0.0.0", BADBUZZ_API_TOKEN="s3cret-token")
    url = f"{w.url}/feedback"
    assert request(f"{url}?token=s3cret-token", method="POST", body=b"{}", headers=JSON)[0] == 401
    assert request(f"{w.url}/api/state?token=s3cret-token")[0] == 401
    for bad in ("Bearer s3cr\xe9t-token", "Bearer \xff\xfe", "Basic s3cret-token", "s3cret-token"):
        assert request(url, method="POST", body=b"{}", headers=JSON | {"Authorization": bad})[0] == 401, bad
    ok = request(url, method="POST", body=b"{}", headers=JSON | {"Authorization": "Bearer s3cret-token"})
    assert ok[0] == 400  # authorized, then validated
    assert json.loads(w.get("/health"))["status"] == "ok"


# -- finding 2: any parse failure dead-letters one record; the agent goes on ---------------------------
def test_poison_records_are_dead_lettered_and_the_agent_goes_on(broker, worker):
    env = worker.env
    poison = [
        (b"v2p-1", b'{"data":{"id":"v2p-1","text":"poison"},"includes":[1]}'),
        (bytes(range(256)) * 800, b"not json"),  # 200 KB binary key
    ]
    good = [(f"sec-ok-{i}".encode(), orjson.dumps({"id": f"sec-ok-{i}", "text": f"flight {i} was fine",
                                                    "brand": "secair"})) for i in range(5)]
    asyncio.run(produce_messages(broker.url, env["BADBUZZ_TOPIC_TWEETS"], poison + good))

    async def read(topic: str, limit: int) -> list:
        return [r async for r in consume_topic(broker.url, topic, limit=limit, timeout=30)]

    def of_tweets(records: list) -> list:  # the module's worker also dead-letters other tests' feedback
        return [r for r in records if orjson.loads(r.value)["source"]["topic"] == env["BADBUZZ_TOPIC_TWEETS"]]

    async def read_all(topic: str) -> list:
        return [r async for r in consume_topic(broker.url, topic, timeout=2)]

    deadline, dead = time.monotonic() + 30, []
    while len(dead) < 2 and time.monotonic() < deadline:
        dead = of_tweets(asyncio.run(read_all(env["BADBUZZ_TOPIC_DLQ"])))
    letters = {orjson.loads(r.value)["error"]["code"]: (r, orjson.loads(r.value)) for r in dead}
    assert set(letters) == {"invalid_field", "invalid_json"}, letters
    v2_rec, v2 = letters["invalid_field"]
    assert "includes" in v2["error"]["message"] and v2_rec.key == b"v2p-1"
    big_rec, big = letters["invalid_json"]
    assert big_rec.key is None and len(big_rec.value) < 4096
    assert len(big["source"]["key"].encode()) <= 1024 and big["source"]["key_truncated"]["original_bytes"] == 204_800

    enriched = asyncio.run(read(env["BADBUZZ_TOPIC_ENRICHED"], 5))
    assert sorted(orjson.loads(r.value)["id"] for r in enriched) == [f"sec-ok-{i}" for i in range(5)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = worker.get("/metrics").decode()
        counts = {name: sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", m, re.M))
                  for name in ("badbuzz_events_in_total", "badbuzz_events_enriched_total",
                               "badbuzz_events_dead_lettered_total")}
        # other tests' feedback to this module's worker is dead-lettered too (unknown tweets): not input tweets
        counts["badbuzz_events_dead_lettered_total"] -= sum(float(v) for v in re.findall(
            r'^badbuzz_events_dead_lettered_total{reason="(?:invalid_feedback|unknown_tweet|expired_tweet)"} (\S+)$',
            m, re.M))
        if counts["badbuzz_events_in_total"] >= 7:
            break
        time.sleep(0.5)
    assert counts["badbuzz_events_in_total"] == counts["badbuzz_events_enriched_total"] + counts[
        "badbuzz_events_dead_lettered_total"] == 7, counts
    assert "AttributeError" not in worker.tail(50_000) and "crashed" not in worker.tail(50_000).lower()


# -- finding 8: SIGTERM / SIGINT end the worker within Kubernetes' 30 s grace period ----------------------
def stop_with(w: WorkerProcess, sig: signal.Signals, timeout: float = 40) -> tuple[int | None, float]:
    started = time.monotonic()
    w.proc.send_signal(sig)
    try:
        return w.proc.wait(timeout), time.monotonic() - started
    except subprocess.TimeoutExpired:
        w.kill()
        return None, time.monotonic() - started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_ends_a_busy_worker_with_offsets_committed(broker, start_worker, sig):
    w = start_worker(f"stop{sig.value}")
    topic = w.env["BADBUZZ_TOPIC_TWEETS"]
    tweets = [(None, orjson.dumps({"id": f"st-{i}", "text": f"flight {i} delayed again", "brand": "secair"}))
              for i in range(300)]
    asyncio.run(produce_messages(broker.url, topic, tweets))

    async def enriched() -> int:
        return len([r async for r in consume_topic(broker.url, w.env["BADBUZZ_TOPIC_ENRICHED"], limit=300,
                                                   timeout=30)])

    assert asyncio.run(enriched()) == 300
    rc, took = stop_with(w, sig)
    assert rc == 0 and took <= 30, (rc, took, w.tail())
    lag = asyncio.run(group_lag(broker.url, w.env["BADBUZZ_APP_ID"], topic))
    assert lag and not any(lag.values()), lag


def test_stop_signal_ends_the_worker_even_with_the_broker_gone(tmp_path):
    with EmbeddedBroker() as own:
        w = worker_process(own.url, tmp_path, "orphan").start()
    time.sleep(2)  # the broker is gone: Faust's own stop would wait for its consumer thread forever
    rc, took = stop_with(w, signal.SIGTERM)
    assert rc is not None and took <= 30, (rc, took, w.tail())
    assert "exiting now" in w.tail(200_000)


def test_host_and_origin_allow_list():
    from types import SimpleNamespace

    from stream_app.config import Settings
    from stream_app.web.views import allowed_hosts, host_allowed

    def ok(allowed, host, origin=None):
        headers = {"Host": host} | ({"Origin": origin} if origin else {})
        return host_allowed(SimpleNamespace(headers=headers), allowed)

    local = allowed_hosts(Settings(web_port=6066))
    assert ok(local, "127.0.0.1:6066") and ok(local, "LOCALHOST:6066", "http://localhost:6066")
    assert ok(local, "[::1]:6066") and ok(local, "127.0.0.1:6066", "http://localhost:6066")
    assert not ok(local, "evil.example:6066") and not ok(local, "127.0.0.1:6066", "http://evil.example")
    assert not ok(local, "127.0.0.1:6067") and not ok(local, "") and not ok(local, "127.0.0.1:6066", "null")
    public = allowed_hosts(Settings(web_host="10.0.0.5", web_port=6066, dashboard_url="https://dash.example.com/"))
    assert ok(public, "dash.example.com", "https://dash.example.com") and ok(public, "10.0.0.5:6066")
    assert ok(public, "dash.example.com:443") and not ok(public, "dash.example.com", "https://evil.example")
    wildcard = allowed_hosts(Settings(web_host="0.0.0.0"))  # the token protects it: any Host, same-origin only
    assert wildcard is None and ok(wildcard, "pod-ip:6066") and ok(wildcard, "a.example", "https://a.example")
    assert not ok(wildcard, "a.example", "https://evil.example")


def test_stop_signal_stops_the_embedded_broker(tmp_path):
    w = worker_process("", tmp_path, "embedded").start()  # no BADBUZZ_BROKER: the worker starts its own broker
    port = int(re.search(r"BADBUZZ_BROKER=kafka://127\.0\.0\.1:(\d+)", w.tail(200_000)).group(1))
    rc, took = stop_with(w, signal.SIGTERM)
    assert rc == 0 and took <= 30, (rc, took)
    deadline = time.monotonic() + 5
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = listening(port)
    if left:  # do not leave the orphan running
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and f"127.0.0.1:{port}".encode() in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass
    assert not left, f"the embedded broker still listens on {port}"

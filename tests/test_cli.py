"""The ``badbuzz`` commands, run as a user would (subprocesses, real broker)."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time

import orjson
import pytest

from stream_app.simulator import Scenario


def badbuzz(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], capture_output=True, text=True,
                          env=os.environ | (env or {}), timeout=timeout)


def test_help_documents_every_command_and_env():
    out = badbuzz("--help").stdout
    for cmd in ("broker", "worker", "produce", "consume", "score", "demo", "model", "rules", "feedback", "alerts",
                "bench"):
        assert cmd in out
    assert "BADBUZZ_BROKER" in out and "BADBUZZ_WEB_PORT" in out
    from stream_app.config import DELIVERY_ENV_DOCS, ENV_DOCS

    assert all(name in out for name in ENV_DOCS | DELIVERY_ENV_DOCS), "every variable the code reads, once"


def test_alerts_backtest_prints_what_would_be_sent(tmp_path):
    path = tmp_path / "t.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["tweet_id", "tweet_created", "airline", "text", "airline_sentiment"])
        w.writeheader()
        for i in range(40):
            w.writerow({"tweet_id": str(i), "tweet_created": f"2015-02-17 1{i // 20}:{i % 60:02d}:00 -0800",
                        "airline": "US Airways", "text": "@USAirways fine flight" if i % 2 else "@USAirways awful",
                        "airline_sentiment": "neutral" if i % 2 else "negative"})
        w.writerow({"tweet_id": "bad", "tweet_created": "yesterday", "airline": "x", "text": "?"})
    res = badbuzz("alerts", "backtest", str(path), "--sentiment-from-labels", "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr
    assert "40 tweets (1 invalid" in res.stdout and "surge episodes: 0" in res.stdout
    import json

    result = json.loads((tmp_path / "r.json").read_text())
    assert result["tweets"] == 40 and result["alerts"] == [] and result["score"]["recall"] is None
    res = badbuzz("alerts", "backtest", str(tmp_path / "missing.csv"))
    assert res.returncode == 2 and "missing.csv" in res.stderr


def write_sample(path, n=60):
    sc = Scenario(seed=3)
    rows = [sc.chatter(1_790_000_000 + i) for i in range(n // 2)]
    rows += [sc.storm_tweet(1_790_000_000) for _ in range(n // 2)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["tweet_id", "text", "brand"])
        w.writeheader()
        for r in rows:
            w.writerow({"tweet_id": r["id"], "text": r["text"], "brand": r["brand"]})
        w.writerow({"tweet_id": "empty", "text": "", "brand": "x"})
    return len(rows)


def test_score_csv_keeps_columns_and_adds_enrichment(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    n = write_sample(src)
    res = badbuzz("score", str(src), "-o", str(dst), "--quiet")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(dst, encoding="utf-8")))
    assert len(rows) == n + 1
    for col in ("tweet_id", "text", "brand", "sentiment", "sentiment_score", "p_negative", "p_neutral",
                "p_positive", "is_claim", "urgency", "topics", "incident", "confidence"):
        assert col in rows[0]
    scored = [r for r in rows if r["sentiment"]]
    assert len(scored) == n and rows[-1]["error"].startswith("empty_text")
    for r in scored:
        total = float(r["p_negative"]) + float(r["p_neutral"]) + float(r["p_positive"])
        assert abs(total - 1) < 1e-3
    storm = [r for r in scored if "lost" in r["text"].lower() or "luggage" in r["text"].lower()]
    assert storm and sum(r["sentiment"] == "negative" for r in storm) / len(storm) > 0.8


def test_score_brand_gives_the_domain_pack_and_reasons_are_printed(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "airline"])
        w.writeheader()
        w.writerow({"text": "my bag was lost on the flight to Denver, nobody helps", "airline": "United"})
        w.writerow({"text": "", "airline": "United"})
    res = badbuzz("score", str(src), "-o", str(dst), "--quiet", "--brand-column", "airline")
    assert res.returncode == 0 and "1 empty_text" in res.stderr, res.stderr
    rows = list(csv.DictReader(open(dst, encoding="utf-8")))
    assert rows[0]["incident"] == "baggage", rows[0]  # without a brand: the generic pack, no incident
    res = badbuzz("score", str(src), "-o", str(dst), "--quiet", "--brand", "united")
    assert list(csv.DictReader(open(dst, encoding="utf-8")))[0]["incident"] == "baggage"


def test_score_jsonl(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b'{"id": "a", "text": "love it"}\n{"text": "no id but fine"}\n')
    assert badbuzz("score", str(src), "-o", str(dst), "--quiet").returncode == 0
    out = [orjson.loads(line) for line in dst.read_bytes().splitlines()]
    assert out[0]["id"] == "a" and out[1]["id"].startswith("gen-") and out[1]["sentiment"]["label"]


def test_model_vocabulary_tells_english_from_french(tmp_path):
    english, french = tmp_path / "en.csv", tmp_path / "fr.csv"
    english.write_text("text\n" + "\n".join(["@united my flight was cancelled again, terrible service"] * 5) + "\n")
    french.write_text("text\n" + "\n".join(["@freebox encore une panne de la fibre ce soir, inadmissible"] * 5)
                      + "\n")
    res = badbuzz("model", "vocabulary", str(english), str(french))
    assert res.returncode == 0, res.stderr
    shares = {line.split(":")[0].strip(): float(line.split(":")[1].split("%")[0]) for line in res.stdout.splitlines()
              if line.startswith("  ")}
    assert shares["en.csv"] < 25 < shares["fr.csv"], res.stdout  # 25%: the shipped drift threshold


@pytest.mark.integration
def test_produce_and_consume_roundtrip(broker, tmp_path):
    src = tmp_path / "in.csv"
    n = write_sample(src, 20)
    env = {"BADBUZZ_BROKER": broker.url}
    res = badbuzz("produce", str(src), "--topic", "cli.rt", "--id-column", "tweet_id", "--brand", "AirParadis",
                  env=env)
    assert res.returncode == 0, res.stderr
    raw = tmp_path / "raw.txt"
    raw.write_bytes(b"garbage line\n{\"id\": 1}\n")
    assert badbuzz("produce", str(raw), "--topic", "cli.rt", "--raw", env=env).returncode == 0
    res = badbuzz("consume", "cli.rt", "--from-beginning", "--timeout", "3", env=env)
    lines = [orjson.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == n + 3  # n scenario rows, the empty-text row, two raw lines
    tweets = [x for x in lines if isinstance(x, dict) and "text" in x]
    assert len(tweets) == n + 1  # the empty-text row is produced too: the worker dead-letters it
    assert all(t["brand"] == "AirParadis" for t in tweets)
    assert "garbage line" in lines and {"id": 1} in lines
    limited = badbuzz("consume", "cli.rt", "--from-beginning", "--limit", "5", env=env)
    assert len(limited.stdout.splitlines()) == 5


def test_produce_without_broker_is_a_clear_error(tmp_path):
    src = tmp_path / "in.csv"
    write_sample(src, 2)
    res = badbuzz("produce", str(src), env={"BADBUZZ_BROKER": ""})
    assert res.returncode == 2 and "BADBUZZ_BROKER is not set" in res.stderr


def test_missing_model_exits_with_one_clear_line(tmp_path):
    res = badbuzz("score", str(tmp_path / "x.csv"), "-o", str(tmp_path / "y.csv"),
                  env={"BADBUZZ_MODEL_DIR": str(tmp_path / "nope")})
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "model file(s) missing" in res.stderr


def test_worker_logging_does_not_build_debug_records_nobody_prints():
    """Faust's spinner put the root logger at DEBUG: every aiokafka debug call built a record."""
    import asyncio
    import logging

    import faust

    from stream_app.cli import quiet_worker_class

    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        app = faust.App("logging-check", broker="kafka://127.0.0.1:9")
        quiet_worker_class()(app, loglevel="warning", quiet=True, override_logging=True)._setup_logging()
        assert not logging.getLogger("aiokafka.producer.sender").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("faust.topics").isEnabledFor(logging.INFO)
        assert logging.getLogger("badbuzz").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        asyncio.set_event_loop(None)
        loop.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_broker_command_stops_its_broker_on_a_signal(sig):
    """``badbuzz broker &`` then ``kill %1``: no Tansu process is left listening."""
    from stream_app.broker import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "broker", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith(f"BADBUZZ_BROKER=kafka://127.0.0.1:{port}")
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"something still listens on {port} after the broker command ended")
    finally:
        proc.kill()


def test_every_subcommand_parses_its_options():
    from stream_app.cli import build_parser

    p = build_parser()
    args = p.parse_args(["rules", "eval", "--split", "heldout", "--task", "is_claim"])
    assert (args.split, args.task) == ("heldout", ["is_claim"])
    assert p.parse_args(["rules", "eval", "--split=dev"]).split == "dev"
    assert p.parse_args(["alerts", "backtest", "f.csv", "--labels"]).labels
    assert p.parse_args(["produce", "f.csv", "--brand-column", "airline", "--in-time-order"]).in_time_order
    for argv in (["rules", "eval", "--help"], ["alerts", "backtest", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as info:
            p.parse_args(argv)
        assert info.value.code == 0


KPI_COLUMNS = ("sentiment", "sentiment_score", "p_negative", "p_neutral", "p_positive", "is_claim", "urgency",
               "topics", "incident", "confidence", "truncated")


def test_score_every_kpi_has_a_value_and_long_posts_are_truncated(tmp_path):
    """No brand column, --brand united: the airline pack's incidents, 'none'/'general' where nothing matched,
    a long post scored on its first BADBUZZ_MAX_TEXT characters, only a text past the hard cap refused."""
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    texts = ["my bag was lost on the flight to Denver, nobody helps",
             "flight delayed 4 hours again, missed my connection",
             "thanks for the upgrade, lovely crew",
             "ok",
             "what a day " * 60 + "and then my flight was cancelled",  # 692 characters
             "x" * (64 * 1024 + 1)]
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text"])
        w.writeheader()
        w.writerows({"text": t} for t in texts)
    res = badbuzz("score", str(src), "-o", str(dst), "--quiet", "--brand", "united",
                  env={"BADBUZZ_MAX_TEXT": "200"})
    assert res.returncode == 0 and "1 text_too_long" in res.stderr, res.stderr
    rows = list(csv.DictReader(open(dst, encoding="utf-8")))
    scored, refused = rows[:-1], rows[-1]
    assert refused["error"].startswith("text_too_long")
    empty = [(i, c) for i, r in enumerate(scored) for c in KPI_COLUMNS if r[c] == ""]
    assert not empty, empty
    assert [r["incident"] for r in scored[:2]] == ["baggage", "delay"]
    assert scored[3]["incident"] == "none" and scored[3]["topics"] == "general"
    assert [r["truncated"] for r in scored] == ["false"] * 4 + ["true"]
    assert len(scored[4]["text"]) == 692  # the input column is kept; the score is of its first 200 characters

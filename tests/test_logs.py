"""Structured logs: with BADBUZZ_LOG_FORMAT=json every line a worker writes on stderr is one JSON object."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import subprocess
import sys
from datetime import datetime, timedelta

import orjson
import pytest

from stream_app.broker import free_port
from stream_app.kafkaio import consume_topic, produce_messages
from stream_app.logs import configure_logging
from stream_app.workerproc import WorkerProcess, isolated_env


@pytest.mark.integration
def test_json_logs_from_a_real_worker(broker, tmp_path):
    env = isolated_env(broker.url, "jsonlog", tmp_path / "state", free_port()) | {
        "BADBUZZ_LOG_FORMAT": "json", "BADBUZZ_LOG_LEVEL": "info", "BADBUZZ_ORT_THREADS": "1"}
    w = WorkerProcess(env, tmp_path / "stdout.log", stderr_log=tmp_path / "stderr.log")
    try:
        w.start()
        records = [(b"bad-1", b"{not json"), (b"ok-1", orjson.dumps({"id": "ok-1", "text": "lovely flight"}))]
        asyncio.run(produce_messages(broker.url, env["BADBUZZ_TOPIC_TWEETS"], records))

        async def first(topic: str) -> list:
            return [r async for r in consume_topic(broker.url, topic, limit=1, timeout=30)]

        assert asyncio.run(first(env["BADBUZZ_TOPIC_DLQ"])) and asyncio.run(first(env["BADBUZZ_TOPIC_ENRICHED"]))
    finally:
        w.stop()
    lines = [line for line in (tmp_path / "stderr.log").read_text().splitlines() if line.strip()]
    assert len(lines) > 5, lines
    events = [json.loads(line) for line in lines]  # every line, not only ours (Faust's, aiokafka's too)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in events)
    assert {e["logger"].split(".")[0] for e in events} >= {"badbuzz", "faust"}
    (dead,) = [e for e in events if e["message"].startswith("dead-lettered")]
    assert dead["level"] == "INFO" and dead["code"] == "invalid_json" and dead["offset"] == 0
    assert dead["topic"] == env["BADBUZZ_TOPIC_TWEETS"] and isinstance(dead["partition"], int)


def test_text_is_the_default_and_a_bad_format_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "stream_app.cli", "score", str(tmp_path / "missing.csv"),
                          "-o", str(tmp_path / "out.csv")], env={"BADBUZZ_LOG_FORMAT": "yaml", "PATH": ""},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "BADBUZZ_LOG_FORMAT='yaml' is not text or json" in res.stderr


def test_record_fields_become_json_keys(capsys):
    configure_logging("info", "json")
    try:
        logging.getLogger("badbuzz.test").warning("tweet %s refused", "t1", extra={"tweet_id": "t1", "partition": 3})
        (line,) = capsys.readouterr().err.splitlines()
        event = json.loads(line)
        assert event["message"] == "tweet t1 refused" and event["tweet_id"] == "t1" and event["partition"] == 3
        assert event["level"] == "WARNING" and event["logger"] == "badbuzz.test"
        assert datetime.fromisoformat(event["time"]).utcoffset() == timedelta(0)
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                                   "root": {"handlers": [], "level": "WARNING"}})
        logging.captureWarnings(False)

"""Shared fixtures: the real embedded broker, a real worker process, the shipped model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import DEFAULT_MODEL_DIR
from stream_app.datasets import data_dir
from stream_app.workerproc import WorkerProcess, isolated_env

from .servers import SmtpServer, TwilioServer, WebhookServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return Path(os.environ.get("BADBUZZ_MODEL_DIR") or DEFAULT_MODEL_DIR)


@pytest.fixture(scope="session")
def enricher(model_dir: Path):
    from stream_app.enrich import Enricher
    from stream_app.rules.engine import RuleEngine
    from stream_app.scoring.sentiment import SentimentModel

    return Enricher(SentimentModel(model_dir, threads=1), RuleEngine.load())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not present at {path}")
    return path


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def worker_process(broker_url: str, tmp: Path, name: str, extra_env: dict[str, str] | None = None) -> WorkerProcess:
    """A real ``badbuzz worker`` with its own app id, topics and web port (one ORT thread: tests share cores)."""
    env = isolated_env(broker_url, name, tmp / f"state-{name}", free_port()) | {"BADBUZZ_ORT_THREADS": "1"}
    log = tmp / f"worker-{name}.log"
    n = 1
    while log.exists():  # a restarted worker keeps its predecessor's log
        n += 1
        log = tmp / f"worker-{name}-{n}.log"
    log.touch()
    return WorkerProcess(env | (extra_env or {}), log)


@pytest.fixture
def start_worker(broker: EmbeddedBroker, tmp_path: Path):
    workers: list[WorkerProcess] = []

    def start(name: str, **env: str) -> WorkerProcess:
        w = worker_process(broker.url, tmp_path, name, env).start()
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it receives."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def webhook_server():
    """A local HTTP endpoint recording webhook POSTs (Slack-compatible JSON)."""
    with WebhookServer() as server:
        yield server


@pytest.fixture
def twilio_server():
    """A local HTTP server speaking Twilio's Messages API, for the real twilio SDK."""
    with TwilioServer() as server:
        yield server

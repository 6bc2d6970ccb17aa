"""Shared fixtures: the real embedded broker, a real worker process, the shipped model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import DEFAULT_MODEL_DIR
from stream_app.datasets import data_dir

from .servers import SmtpServer, TwilioServer

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


class WorkerProcess:
    """A real ``badbuzz worker`` subprocess with its own app id and topics."""

    def __init__(self, broker_url: str, tmp: Path, name: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.env = os.environ | {
            "BADBUZZ_BROKER": broker_url,
            "BADBUZZ_APP_ID": f"badbuzz-{name}",
            "BADBUZZ_TOPIC_TWEETS": f"{name}.tweets",
            "BADBUZZ_TOPIC_ENRICHED": f"{name}.enriched",
            "BADBUZZ_TOPIC_FEEDBACK": f"{name}.feedback",
            "BADBUZZ_TOPIC_ALERTS": f"{name}.alerts",
            "BADBUZZ_TOPIC_DLQ": f"{name}.dlq",
            "BADBUZZ_WEB_PORT": str(self.port),
            "BADBUZZ_STATE_DIR": str(tmp / f"state-{name}"),
            "BADBUZZ_ORT_THREADS": "1",
        } | (extra_env or {})
        self.log = tmp / f"worker-{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "worker", "--loglevel", "warning"],
                                     env=self.env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"worker not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            return resp.read()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_worker(broker: EmbeddedBroker, tmp_path: Path):
    workers: list[WorkerProcess] = []

    def start(name: str, **env: str) -> WorkerProcess:
        w = WorkerProcess(broker.url, tmp_path, name, env).start()
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
def twilio_server():
    """A local HTTP server speaking Twilio's Messages API, for the real twilio SDK."""
    with TwilioServer() as server:
        yield server

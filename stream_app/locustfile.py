"""Locust user of ``badbuzz bench --http``: one simulator tweet per ``POST /predict``, at a fixed pace.

Loaded by ``locust -f`` in its own (gevent) process, never imported by the package. Options come from the
command line that ``stream_app.bench_http`` builds: ``--texts-file`` (JSON lines of texts written from the
scenario simulator) and ``--per-user-rate`` (requests per second of each user; users x rate = the arrival rate).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task

TEXTS: list[str] = []


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--texts-file", default="", help="JSON lines, one text each")
    parser.add_argument("--per-user-rate", type=float, default=1.0, help="requests per second per user")


@events.init.add_listener
def _load_texts(environment: Any, **_: Any) -> None:
    with open(environment.parsed_options.texts_file, encoding="utf-8") as fh:
        TEXTS[:] = [json.loads(line) for line in fh if line.strip()]


_next_text = itertools.count()


class PredictUser(FastHttpUser):
    """A client posting one tweet per request; a request that fails or is not 200 counts as an error."""

    def wait_time(self) -> float:
        # constant_throughput keeps its pacing state on the user: each user starts one request every 1/rate s
        # (sooner never; later only when a response took longer than that).
        return constant_throughput(self.environment.parsed_options.per_user_rate)(self)

    @task
    def predict(self) -> None:
        text = TEXTS[next(_next_text) % len(TEXTS)]
        with self.client.post("/predict", json={"text": text}, catch_response=True, name="POST /predict") as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")

"""``badbuzz demo``, short: the live view, the closing summary, and ``--keep`` stopping everything on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from stream_app.broker import free_port

pytestmark = pytest.mark.integration


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_keep_runs_until_ctrl_c_then_stops_everything(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BADBUZZ_BROKER"} | {
        "BADBUZZ_WEB_PORT": str(port), "BADBUZZ_STATE_DIR": str(tmp_path / "state"), "BADBUZZ_ORT_THREADS": "1"}
    out = tmp_path / "demo.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "demo", "--duration", "6", "--rate", "2",
                                 "--final-wait", "1", "--keep"], env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while "--keep: the worker" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, out.read_text(errors="replace")
            time.sleep(0.5)
        broker_port = int(re.search(r"-- broker kafka://127\.0\.0\.1:(\d+)", out.read_text()).group(1))
        time.sleep(3)  # still up after the traffic: the dashboard answers
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5) as resp:
            assert json.loads(resp.read())["brands"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text(errors="replace")
    assert "-- summary:" in text and "everything is stopped now" in text
    assert re.search(r"-- summary: [1-9]\d* tweets enriched", text), text
    assert "airparadis" in text  # the view's table, one row per brand
    deadline = time.monotonic() + 10
    while (listening(port) or listening(broker_port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening(port) and not listening(broker_port), "worker or broker still running"

"""``badbuzz bench --http`` end to end, short and slow: a real worker, a real locust, every process stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_app.bench_http import predict_bench

pytestmark = pytest.mark.integration


def children() -> set[int]:
    """Pids of this process's children (from /proc)."""
    me, out = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[1]) == me:
                    out.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def test_predict_bench_runs_and_stops_everything(tmp_path):
    before = children()
    result = predict_bench(rate=10, duration=5, workdir=tmp_path)
    assert result["errors"] == 0 and result["requests"] >= 30, result
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["p99"]
    assert result["worker_predict_ok"] >= result["requests"]  # the worker saw them (and the warm-up)
    assert children() <= before, "the broker, the worker and locust are all stopped"

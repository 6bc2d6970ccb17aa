"""A ``badbuzz worker`` subprocess on its own topics and web port (demo, benchmarks, tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .broker import free_port

TOPIC_VARS = {"TWEETS": "tweets", "ENRICHED": "enriched", "FEEDBACK": "feedback", "ALERTS": "alerts", "DLQ": "dlq"}


def isolated_env(broker_url: str, name: str, state_dir: Path, port: int) -> dict[str, str]:
    """Environment for a worker with app id, topics, web port and state of its own."""
    return {
        "BADBUZZ_BROKER": broker_url,
        "BADBUZZ_APP_ID": f"badbuzz-{name}",
        "BADBUZZ_WEB_PORT": str(port),
        "BADBUZZ_STATE_DIR": str(state_dir),
        **{f"BADBUZZ_TOPIC_{var}": f"{name}.{topic}" for var, topic in TOPIC_VARS.items()},
    }


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path, *, web_host: str = "127.0.0.1",
                 cpus: set[int] | None = None, stderr_log: Path | None = None) -> None:
        self.env = os.environ | env
        self.cpus = cpus  # pin the worker (and every thread it starts) to these cores
        self.port = int(self.env.get("BADBUZZ_WEB_PORT") or free_port())
        self.env["BADBUZZ_WEB_PORT"] = str(self.port)
        self.url = f"http://{web_host}:{self.port}"
        self.log = log
        self.stderr_log = stderr_log  # stderr (the logs) apart from stdout, else both in ``log``
        self.proc: subprocess.Popen | None = None

    def _pin(self) -> None:
        os.sched_setaffinity(0, self.cpus or set())

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        """Start the worker and wait until ``/ready`` answers 200."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out, open(self.stderr_log or os.devnull, "wb") as err:
            level = self.env.get("BADBUZZ_LOG_LEVEL", "warning")
            self.proc = subprocess.Popen([sys.executable, "-m", "stream_app.cli", "worker", "--loglevel", level],
                                         env=self.env, stdout=out, stderr=err if self.stderr_log else subprocess.STDOUT,
                                         preexec_fn=self._pin if self.cpus else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"worker not ready in {timeout:.0f}s: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            return resp.read()

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM) of the worker process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no commit, no flush, no goodbye."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

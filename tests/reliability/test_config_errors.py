"""Configuration errors stop ``badbuzz worker`` at start-up with one clear line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ALERT_RULES = Path(__file__).resolve().parents[2] / "stream_app" / "alerting" / "alert_rules.toml"


def worker(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {"BADBUZZ_BROKER": "kafka://127.0.0.1:1", "BADBUZZ_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "stream_app.cli", "worker"], env=os.environ | base | env,
                          capture_output=True, text=True, timeout=60)


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode != 0
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("badbuzz: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_broken_alert_toml(tmp_path):
    bad = tmp_path / "alerts.toml"
    bad.write_text("[rules.negative_spike\nwindow_minutes = 5\n")
    one_line_error(worker({"BADBUZZ_ALERT_RULES": str(bad)}, tmp_path), str(bad), "invalid TOML")


def test_unknown_alert_rule_field(tmp_path):
    bad = tmp_path / "alerts.toml"
    bad.write_text(ALERT_RULES.read_text().replace("window_minutes = 5", "window_minutes = 5\nwindow_minuts = 3", 1))
    one_line_error(worker({"BADBUZZ_ALERT_RULES": str(bad)}, tmp_path), str(bad), "window_minuts")


def test_broken_rule_table(tmp_path):
    src = Path(__file__).resolve().parents[2] / "stream_app" / "rules" / "tables"
    dst = tmp_path / "tables"
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    target = dst / "en" / "airline.toml"
    target.write_text(target.read_text() + "\n[[rule]]\nid = 'x.bad'\nlabel = 'bad'\nkind = 'topic'\nbogus = 1\n")
    one_line_error(worker({"BADBUZZ_RULES_DIR": str(dst)}, tmp_path), "airline.toml", "bogus")


def test_missing_model_file(tmp_path, model_dir):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("tokenizer.json", "config.json"):
        (model / name).write_bytes((model_dir / name).read_bytes())
    one_line_error(worker({"BADBUZZ_MODEL_DIR": str(model)}, tmp_path), "model.onnx")


def test_sms_enabled_without_twilio_credentials(tmp_path):
    env = {"BADBUZZ_ALERT_PHONES": "+33612345678", "BADBUZZ_ALERT_EMAILS": "ops@example.com",
           "TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "", "TWILIO_FROM": ""}
    one_line_error(worker(env, tmp_path), "TWILIO_")


def test_public_bind_without_token(tmp_path):
    one_line_error(worker({"BADBUZZ_WEB_HOST": "0.0.0.0", "BADBUZZ_API_TOKEN": ""}, tmp_path), "BADBUZZ_API_TOKEN")


@pytest.mark.parametrize(("name", "value"), [("BADBUZZ_PARTITIONS", "four"), ("BADBUZZ_WEB_PORT", "http")])
def test_bad_numbers(tmp_path, name, value):
    one_line_error(worker({name: value}, tmp_path), name)

from __future__ import annotations

import tomllib

import pytest

from stream_app.alerting import AlertConfigError, load_config, load_rules
from stream_app.alerting.config import parse_config
from stream_app.alerting.rules import DEFAULT_RULES_PATH

RULES = load_rules()
DEFAULT_DOC = tomllib.loads(DEFAULT_RULES_PATH.read_text())


# --------------------------------------------------------------------------------------------- loading


def test_default_config_loads():
    cfg = load_config(env={})
    assert cfg.rules.negative_spike.params.windows_minutes == (15, 60)
    assert cfg.rules.negative_spike.params.baseline_hours >= 72, "a storm of hours must not become the baseline"
    assert "customer_service" in cfg.rules.incident_spike.ignore
    assert cfg.retry["sms"].max_attempts == 6
    assert cfg.policy.routing.channels_used() == set()  # no recipients in env


def _write(tmp_path, text):
    p = tmp_path / "rules.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["rules"]["negative_spike"].update(windw_minutes=5),
         "rules.negative_spike.windw_minutes: unknown key"),
        (lambda d: d["rules"]["negative_spike"].update(windows_minutes="5"),
         "rules.negative_spike.windows_minutes: expected array, got string"),
        (lambda d: d["rules"]["negative_spike"].update(windows_minutes=[0, 60]), "positive integers"),
        (lambda d: d["rules"]["negative_spike"].update(significance=0), "must be in (0, 1]"),
        (lambda d: d["rules"]["negative_spike"]["warning"].pop("k"), "rules.negative_spike.warning.k: missing"),
        (lambda d: d["rules"].pop("misclassification"), "rules.misclassification: missing rule table"),
        (lambda d: d["rules"]["misclassification"].pop("critical"), "needs a [warning] or a [critical] tier"),
        (lambda d: d["rules"]["negative_spike"].update(team="marketing"), "rules.negative_spike.team: unknown team"),
        (lambda d: d.update(teams={"sales": {}}), "teams.sales: unknown team"),
        (lambda d: d["teams"]["devops"].update(page={}), "teams.devops.page: unknown severity"),
        (lambda d: d["rules"].update(surge={}), "rules.surge: unknown rule"),
        (lambda d: d["rules"]["negative_spike"]["critical"].update(floor=1),
         "rules.negative_spike.critical: critical threshold must not be below"),
        (lambda d: d["rules"]["misclassification"].update(warning={"count": 5}),
         "rules.misclassification.critical: critical threshold must not be below"),
        (lambda d: d["rules"]["critical_claim"].update(urgency="urgent"), "unknown urgency 'urgent'"),
        (lambda d: d["rules"]["negative_spike"].update(enabled="yes"), "expected boolean"),
        (lambda d: d["rules"]["negative_spike"].update(warmup_hours=2.5), "expected integer, got number"),
        (lambda d: d["settings"].update(allowed_lateness_seconds=-1), "must be >= 0"),
        (lambda d: d.update(alerting={}), "alerting: unknown table"),
        (lambda d: d["routing"]["critical"].update(pager=["x"]), "routing.critical.pager: unknown key"),
        (lambda d: d["routing"]["warning"].update(email=["not-an-email"]), "is not an e-mail address"),
        (lambda d: d.update(quiet_hours={"sms": {"start": "25:00", "end": "07:00"}}), "quiet_hours.sms.start"),
        (lambda d: d.update(quiet_hours={"sms": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}),
         "unknown time zone"),
        (lambda d: d["delivery"]["sms"].update(max_attempts=0), "delivery.sms.max_attempts: must be > 0"),
    ],
)
def test_config_errors_are_one_line_and_name_file_and_field(tmp_path, mutate, expected):
    import copy

    doc = copy.deepcopy(DEFAULT_DOC)
    mutate(doc)
    with pytest.raises(AlertConfigError) as info:
        parse_config(doc, "custom.toml", env={})
    msg = str(info.value)
    assert msg.startswith("custom.toml: ") and expected in msg and "\n" not in msg


def test_broken_toml_and_missing_file(tmp_path):
    p = _write(tmp_path, "[rules\nx=1")
    with pytest.raises(AlertConfigError, match=r"rules.toml: invalid TOML"):
        load_config(p, env={})
    with pytest.raises(AlertConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_env_recipients_are_validated_and_masked():
    with pytest.raises(AlertConfigError) as info:
        load_config(env={"BADBUZZ_ALERT_EMAILS": "ok@example.com", "BADBUZZ_ALERT_PHONES": "0612345678"})
    msg = str(info.value)
    assert "$BADBUZZ_ALERT_PHONES" in msg and "0612345678" not in msg


def test_override_path_via_env(tmp_path):
    doc = DEFAULT_RULES_PATH.read_text().replace("min_count = 6", "min_count = 7")
    p = _write(tmp_path, doc)
    cfg = load_config(env={"BADBUZZ_ALERT_RULES": str(p)})
    assert cfg.rules.negative_spike.params.min_count == 7 and cfg.source == str(p)

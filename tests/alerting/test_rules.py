from __future__ import annotations

import tomllib

import pytest

from stream_app.alerting import AlertConfigError, load_config, load_rules
from stream_app.alerting.config import parse_config
from stream_app.alerting.rules import DEFAULT_RULES_PATH, evaluate, parse_rules
from stream_app.alerting.windows import WindowCounts

from .helpers import B0, T0, chatter, tweet

RULES = load_rules()
DEFAULT_DOC = tomllib.loads(DEFAULT_RULES_PATH.read_text())


def storm(hist: dict, bucket: int, negatives: int, incident: str | None = None) -> None:
    wc = WindowCounts.from_dict(hist.get(bucket))
    for i in range(negatives):
        wc.add_tweet(tweet(10_000 + bucket * 1000 + i, incident=incident, followers=1000 + i))
    hist[bucket] = wc


def names(cands):
    return sorted((c.rule, c.subject, c.severity) for c in cands)


# --------------------------------------------------------------------------------------------- loading


def test_default_config_loads():
    cfg = load_config(env={})
    assert cfg.rules.negative_spike.window_minutes == 5
    assert cfg.rules.history_buckets == 65
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
        (lambda d: d["rules"]["negative_spike"].update(window_minutes="5"),
         "rules.negative_spike.window_minutes: expected number, got string"),
        (lambda d: d["rules"]["negative_spike"]["warning"].pop("k"), "rules.negative_spike.warning.k: missing"),
        (lambda d: d["rules"].pop("misclassification"), "rules.misclassification: missing rule table"),
        (lambda d: d["rules"].update(surge={}), "rules.surge: unknown rule"),
        (lambda d: d["rules"]["negative_share"]["warning"].update(share=1.5), "must be in (0, 1]"),
        (lambda d: d["rules"]["misclassification"]["critical"].update(count=2),
         "rules.misclassification.critical: critical threshold must not be below"),
        (lambda d: d["rules"]["critical_claim"].update(urgency="urgent"), "unknown urgency 'urgent'"),
        (lambda d: d["rules"]["negative_spike"].update(enabled="yes"), "expected boolean"),
        (lambda d: d["rules"]["negative_spike"].update(warmup_windows=2.5), "expected integer, got number"),
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
    doc = DEFAULT_RULES_PATH.read_text().replace("min_volume = 30", "min_volume = 7")
    p = _write(tmp_path, doc)
    cfg = load_config(env={"BADBUZZ_ALERT_RULES": str(p)})
    assert cfg.rules.negative_share.min_volume == 7 and cfg.source == str(p)


# ------------------------------------------------------------------------------------------ evaluation


def test_baseline_chatter_never_alerts():
    hist = chatter(range(B0, B0 + 60), per_bucket=20, negative=3)
    for now in range(B0, B0 + 60):
        visible = {b: v for b, v in hist.items() if b <= now}
        assert evaluate(RULES, "acme", now, visible) == []


def test_negative_spike_fires_after_warmup_only():
    hist = chatter(range(B0, B0 + 30), negative=2)
    # a storm right at the start: no history yet -> no spike alert (share may fire, that is another rule)
    early = chatter(range(B0, B0 + 6), negative=2)
    storm(early, B0 + 5, 60)
    assert "negative_spike" not in {c.rule for c in evaluate(RULES, "acme", B0 + 5, early)}
    storm(hist, B0 + 29, 25)  # usual 10 per 5-min window; 35 > critical max(floor 30, 10 + 6 * sigma 2)
    cands = [c for c in evaluate(RULES, "acme", B0 + 29, hist) if c.rule == "negative_spike"]
    assert len(cands) == 1
    c = cands[0]
    assert c.severity == "critical" and c.observed == 35 and c.baseline == 10.0
    assert c.threshold == 30.0  # max(floor 30, 10 + 6 * 2)
    assert c.window_start == "2024-05-01T10:25:00Z" and c.window_end == "2024-05-01T10:30:00Z"
    assert len(c.samples) == 3 and all(s["text"] for s in c.samples)
    assert c.dedup_key == "negative_spike:acme:negative:2024-05-01T10:25:00Z"


def test_negative_spike_warning_tier():
    hist = chatter(range(B0, B0 + 30), negative=2)
    storm(hist, B0 + 29, 8)  # 18 > max(10, 10 + 3*2 = 16) but not > 30
    [c] = [c for c in evaluate(RULES, "acme", B0 + 29, hist) if c.rule == "negative_spike"]
    assert c.severity == "warning" and c.threshold == 16.0


def test_negative_spike_needs_floor():
    hist = chatter(range(B0, B0 + 30), per_bucket=5, negative=0)
    storm(hist, B0 + 29, 9)  # 9 > 0 + 3*2 but not > floor 10
    assert not [c for c in evaluate(RULES, "acme", B0 + 29, hist) if c.rule == "negative_spike"]


def test_incident_spike_per_type():
    hist = chatter(range(B0, B0 + 30), negative=2, incident="baggage", incidents=1)
    storm(hist, B0 + 29, 12, incident="outage")
    cands = [c for c in evaluate(RULES, "acme", B0 + 29, hist) if c.rule == "incident_spike"]
    assert [(c.subject, c.severity) for c in cands] == [("outage", "warning")]
    assert all("outage" in s["incidents"] for s in cands[0].samples)


def test_negative_share_with_min_volume():
    hist = {B0 + i: WindowCounts(tweets=5, negative=4) for i in range(5)}  # 25 tweets < min_volume 30
    assert not [c for c in evaluate(RULES, "acme", B0 + 4, hist) if c.rule == "negative_share"]
    hist = {B0 + i: WindowCounts(tweets=10, negative=7) for i in range(5)}
    [c] = [c for c in evaluate(RULES, "acme", B0 + 4, hist) if c.rule == "negative_share"]
    assert c.severity == "warning" and c.observed == 0.7 and c.threshold == 0.6
    hist = {B0 + i: WindowCounts(tweets=10, negative=9) for i in range(5)}
    [c] = [c for c in evaluate(RULES, "acme", B0 + 4, hist) if c.rule == "negative_share"]
    assert c.severity == "critical"


@pytest.mark.parametrize(
    "minutes, expected",
    [((0, 1, 4), ["warning"]), ((0, 2), []), ((0, 25, 50), [])],
)
def test_misclassification(minutes, expected):
    hist: dict[int, WindowCounts] = {}
    fired = []
    for m in range(0, 61):
        if m in minutes:
            hist[B0 + m] = WindowCounts().add_misclassification()
        fired += [c.severity for c in evaluate(RULES, "acme", B0 + m, hist) if c.rule == "misclassification"]
    assert sorted(set(fired)) == expected


def test_critical_claim():
    ev = tweet(7, claim=True, urgency="critical", followers=50_000, ts=T0 + 30)
    [c] = evaluate(RULES, "acme", B0, {}, event=ev)
    assert (c.rule, c.severity, c.subject, c.observed, c.threshold) == ("critical_claim", "warning", "7", 50000, 10000)
    assert c.window_start == "2024-05-01T10:00:00Z" and c.samples[0]["id"] == "7"
    ev["author"]["followers"] = 200_000
    assert evaluate(RULES, "acme", B0, {}, event=ev)[0].severity == "critical"
    assert evaluate(RULES, "acme", B0, {}, event=tweet(8, claim=True, urgency="critical", followers=9_999)) == []
    assert evaluate(RULES, "acme", B0, {}, event=tweet(9, claim=True, urgency="medium", followers=10**6)) == []
    assert evaluate(RULES, "acme", B0, {}, event=tweet(10, claim=False, urgency="critical", followers=10**6)) == []


def test_disabled_rule_and_dict_history():
    import copy

    doc = copy.deepcopy(DEFAULT_DOC)
    doc["rules"]["negative_share"]["enabled"] = False
    rules = parse_rules(doc, "x.toml")
    hist = {B0 + i: WindowCounts(tweets=10, negative=9).to_dict() for i in range(5)}
    assert evaluate(rules, "acme", B0 + 4, hist) == []
    assert evaluate(RULES, "acme", B0 + 4, hist)

"""The worker's health rules (stream_app/alerting/health.py) on a clock the test drives."""

from __future__ import annotations

import tomllib

import pytest

from stream_app.alerting._schema import AlertConfigError
from stream_app.alerting.health import LATENCY_EDGES_MS, HealthMonitor, p95, parse_health, unknown_words
from stream_app.alerting.rules import DEFAULT_RULES_PATH

RULES = parse_health(tomllib.loads(DEFAULT_RULES_PATH.read_text()), "shipped")
T0 = 1_796_040_000.0  # a minute boundary
CLOCK: dict[int, int] = {}  # monitor -> next minute to feed


def run(monitor: HealthMonitor, minutes: int, per_minute) -> list:
    """Feed ``per_minute(monitor, t)`` for each minute, evaluating as a worker's timer would."""
    out, first = [], CLOCK.get(id(monitor), 0)
    for i in range(first, first + minutes):
        t = T0 + 60 * i
        per_minute(monitor, t + 1)
        out += monitor.evaluate(t + 61)
    CLOCK[id(monitor)] = first + minutes
    return out


def test_shipped_thresholds_and_config_errors():
    assert RULES["error_rate"].tiers["critical"].threshold == 0.05 and RULES["error_rate"].team == "devops"
    assert RULES["predict_latency"].tiers["critical"].threshold == 200
    assert RULES["prediction_mix"].team == "data_science"
    with pytest.raises(AlertConfigError, match="health.cpu: unknown health rule"):
        parse_health({"health": {"cpu": {}}}, "x.toml")
    with pytest.raises(AlertConfigError, match="needs a"):
        parse_health({"health": {"error_burst": {}}}, "x.toml")


def test_p95_from_the_histogram():
    m = HealthMonitor({})
    for i in range(100):
        m.observe_latency(T0, "stream", 0.010 if i < 94 else 0.5)
    value, n = p95(m.minutes[int(T0 // 60)].latency["stream"])
    assert n == 100 and 500 <= value <= 550 and value in LATENCY_EDGES_MS


def test_latency_two_tiers_then_resolved():
    m = HealthMonitor({"latency": RULES["latency"]})
    slow = run(m, 12, lambda m, t: m.observe_batch(t, tweets=60, latencies_s=[1.5] * 60))
    [crit] = slow
    assert (crit.rule, crit.severity, crit.team, crit.brand) == ("latency", "critical", "devops", "*")
    assert crit.observed >= 1000 and "over 10 min" in crit.note
    fast = run(m, 40, lambda m, t: m.observe_batch(t, tweets=60, latencies_s=[0.05] * 60))
    assert [(c.status, c.reason) for c in fast] == [("resolved", "resolved")]


def test_a_one_minute_backlog_does_not_page():
    m = HealthMonitor({"latency": RULES["latency"]})
    burst = run(m, 1, lambda m, t: m.observe_batch(t, tweets=9000, latencies_s=[8.0] * 9000))
    calm = run(m, 40, lambda m, t: m.observe_batch(t, tweets=60, latencies_s=[0.05] * 60))
    assert burst + calm == [], "P95 must hold for the tier's minutes, not once over them"


def test_errors_rate_and_burst():
    m = HealthMonitor({"error_rate": RULES["error_rate"], "error_burst": RULES["error_burst"]})
    calm = run(m, 60, lambda m, t: m.observe_batch(t, tweets=100, dead=int(t // 60) % 10 == 0))
    assert calm == [], "a dead letter every 10 minutes: never 3 in 5 minutes, 0.1% of the input"
    bad = run(m, 60, lambda m, t: m.observe_batch(t, tweets=100, dead=8))
    assert sorted((c.rule, c.severity) for c in bad) == [("error_burst", "warning"), ("error_rate", "critical")]


@pytest.mark.parametrize("label", ["negative", "positive"])
def test_prediction_mix(label):
    m = HealthMonitor({"prediction_mix": RULES["prediction_mix"]})
    assert run(m, 60, lambda m, t: m.observe_batch(t, tweets=10, labels=["negative"] * 5 + ["neutral"] * 5)) == []
    skew = run(m, 60, lambda m, t: m.observe_batch(t, tweets=20, labels=[label] * 17 + ["neutral"] * 3))
    [alert] = skew
    assert (alert.rule, alert.severity, alert.subject, alert.team) == ("prediction_mix", "warning", label,
                                                                       "data_science")
    assert alert.observed >= 0.8


def test_vocabulary_drift_on_french_text():
    vocab = frozenset({"the", "flight", "was", "late", "again", "bag", "lost", "my", "and", "cancelled"})
    assert unknown_words("@united the flight was late again #fail http://t.co/x", vocab) == (5, 0)
    assert unknown_words("le vol est annulé encore une fois", vocab) == (6, 6)
    m = HealthMonitor({"vocabulary": RULES["vocabulary"]})
    english = run(m, 30, lambda m, t: m.observe_batch(t, tweets=10, words=100, unknown=8))
    assert english == []
    french = run(m, 30, lambda m, t: m.observe_batch(t, tweets=10, words=100, unknown=60))
    assert [(c.rule, c.severity) for c in french] == [("vocabulary", "warning")]


def test_consumer_lag_growing_for_ten_minutes():
    m = HealthMonitor({"consumer_lag": RULES["consumer_lag"]})
    assert run(m, 15, lambda m, t: m.observe_lag(t, 5000 + (t % 120))) == [], "a lag that moves but never grows"
    growing = run(m, 15, lambda m, t: m.observe_lag(t, int(t - T0) * 3))
    assert [(c.rule, c.severity) for c in growing] == [("consumer_lag", "warning")]

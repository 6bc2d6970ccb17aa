"""``badbuzz alerts backtest``: surge episodes, scoring, and the real airline timeline (skips without the data)."""

from __future__ import annotations

import pytest

from stream_app.alerting import load_rules
from stream_app.alerting.rules import Candidate
from stream_app.backtest import HOUR_MS, Episode, backtest, ceiling_minutes, score, surge_episodes

H0 = 1_424_131_200_000  # 2015-02-17T00:00:00Z


def tw(i: int, hour: float, brand: str = "acme") -> dict:
    return {"id": str(i), "brand": brand, "event_time_ms": int(H0 + hour * HOUR_MS)}


def test_surge_episodes_follow_the_method():
    tweets, labels = [], {}
    for h in range(48):
        n = 30 if h in (20, 21, 40) else 3  # two episodes: hours 20-21, hour 40
        for j in range(n):
            t = tw(len(tweets), h + j / n)
            tweets.append(t)
            labels[t["id"]] = "negative"
    eps = surge_episodes(tweets, labels, floor=12)
    assert [(e.start_ms - H0) // HOUR_MS for e in eps] == [20, 40]
    assert [(e.end_ms - H0) // HOUR_MS for e in eps] == [22, 41] and eps[0].peak == 30
    assert surge_episodes(tweets, labels, floor=31) == [], "the floor applies"
    assert ceiling_minutes(tweets, labels, eps) is not None


def cand(brand: str, start_h: float, end_h: float, status: str = "firing") -> Candidate:
    from stream_app.alerting.windows import iso

    return Candidate("negative_spike", "warning", brand, "negative", iso((H0 + start_h * HOUR_MS) / 1000),
                     iso((H0 + end_h * HOUR_MS) / 1000), 30, 3, 12, status=status)


def test_score_is_lenient_by_one_hour():
    eps = [Episode("acme", H0 + 10 * HOUR_MS, H0 + 12 * HOUR_MS, 30, 12.0),
           Episode("acme", H0 + 30 * HOUR_MS, H0 + 31 * HOUR_MS, 20, 12.0)]
    alerts = [cand("acme", 9.5, 10.25), cand("acme", 12.5, 13.0), cand("acme", 20, 21), cand("other", 10, 10.5),
              cand("acme", 11, 11.5, status="resolved")]
    s = score(alerts, eps)
    assert (s["alerts"], s["matched_alerts"], s["detected"]) == (4, 2, 1)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["minutes_to_detect"] == [15.0]


@pytest.mark.data
def test_airline_timeline_with_the_human_labels(shared_data):
    """The rules alone (fed the human labels): the American cancellation storm pages by SMS, calm rows raise
    nothing, and most surge episodes are caught. The figures with the model are in docs/alerting.md."""
    result = backtest(shared_data / "airline_train.csv", load_rules(), None, labels=True, sentiment_from_labels=True)
    s = result["score"]
    assert s["episodes"] >= 25 and s["recall"] >= 0.7 and s["precision"] >= 0.6, s
    assert result["neutral_positive_only"] == 0
    crit = {(a["brand"], a["window_end"][:10]) for a in result["alerts"]
            if a["severity"] == "critical" and a["status"] == "firing"}
    assert {("american", "2015-02-22"), ("american", "2015-02-23")} & crit, crit
    assert max(result["summary"]["max_critical_per_brand_day"].values()) <= 10

"""Reports judged against the prediction table (stream_app/alerting/reports.py)."""

from __future__ import annotations

from stream_app.alerting.reports import Retention, parse_report, prediction_entry, resolve

H = 3_600_000
EV = {"id": "t1", "brand": "united", "text": "lost my bag " * 40, "sentiment": {"label": "negative",
                                                                               "probs": {"negative": 0.9}}}


def test_entry_is_small_and_a_report_needs_only_the_required_fields():
    e = prediction_entry(EV, 1_000, 3)
    assert (e["label"], e["brand"], e["p"], len(e["text"])) == ("negative", "united", 3, 280)
    rep, problem = parse_report({"tweet_id": "t1", "correct_label": "neutral", "reporter": "ana",
                                 "at": "2026-11-30T12:00:00Z"}, 5)
    assert problem is None and rep["claimed"] is None and rep["at_ms"] == 1_796_040_000_000
    assert parse_report({"tweet_id": "t1", "correct_label": "neutral", "reporter": "ana"}, 5)[0]["at_ms"] == 5
    for bad, why in [([], "JSON object"), ({"tweet_id": "t1", "correct_label": "angry", "reporter": "a"}, "one of"),
                     ({"tweet_id": "", "correct_label": "neutral", "reporter": "a"}, "tweet_id"),
                     ({"tweet_id": "t", "correct_label": "neutral", "reporter": "a", "at": "yesterday"}, "at:")]:
        assert why in parse_report(bad, 0)[1]


def test_the_table_decides_not_the_claim():
    entry = prediction_entry(EV, 0, 0)
    rep = parse_report({"tweet_id": "t1", "correct_label": "neutral", "reporter": "ana",
                        "predicted_label": "neutral"}, H)[0]
    v = resolve(rep, entry, 24 * H)
    assert v.kind == "misclassification" and v.overruled and v.report["predicted_label"] == "negative"
    assert v.report["brand"] == "united" and v.report["event_time_ms"] == H
    same = parse_report({"tweet_id": "t1", "correct_label": "negative", "reporter": "ana"}, H)[0]
    assert resolve(same, entry, 24 * H).kind == "confirmation"
    assert resolve(rep, None, 24 * H).kind == "unknown" and "unknown tweet_id" in resolve(rep, None, H).problem
    late = parse_report({"tweet_id": "t1", "correct_label": "neutral", "reporter": "ana"}, 30 * H)[0]
    assert resolve(late, entry, 24 * H).kind == "expired"


def test_retention_by_size_and_age_per_partition():
    r = Retention(max_entries=2, max_age_ms=10 * H)
    assert r.add(0, "a", 0) == [] and r.add(0, "b", 1) == [] and r.add(1, "x", 2) == []
    assert r.add(0, "c", 2) == [(0, "a")], "size bound, oldest first"
    assert r.add(0, "d", 11 * H) == [(1, "b"), (2, "c")], "age bound"
    assert r.add(1, "y", 3) == [], "partitions are apart: a delete goes to the partition being processed"
    r.forget([0])
    assert not r.known(0) and r.known(1)
    r.index(0, [("k2", {"at_ms": 20}), ("k1", {"at_ms": 10})])
    assert r.add(0, "k3", 30) == [(10, "k1")]

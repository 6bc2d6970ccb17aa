"""Reports judged against the prediction table (stream_app/alerting/reports.py)."""

from __future__ import annotations

from stream_app.alerting.reports import (
    PredictionIndex,
    by_partition,
    parse_report,
    partition_of,
    prediction_entry,
    resolve,
)

H = 3_600_000
EV = {"id": "t1", "brand": "united", "text": "lost my bag " * 40, "sentiment": {"label": "negative",
                                                                               "probs": {"negative": 0.9}}}


def test_entry_is_small_and_a_report_needs_only_the_required_fields():
    e = prediction_entry(EV, 1_000)
    assert (e["label"], e["brand"], e["at_ms"], len(e["text"])) == ("negative", "united", 1_000, 280)
    rep, problem = parse_report({"tweet_id": "t1", "correct_label": "neutral", "reporter": "ana",
                                 "at": "2026-11-30T12:00:00Z"}, 5)
    assert problem is None and rep["claimed"] is None and rep["at_ms"] == 1_796_040_000_000
    assert parse_report({"tweet_id": "t1", "correct_label": "neutral", "reporter": "ana"}, 5)[0]["at_ms"] == 5
    for bad, why in [([], "JSON object"), ({"tweet_id": "t1", "correct_label": "angry", "reporter": "a"}, "one of"),
                     ({"tweet_id": "", "correct_label": "neutral", "reporter": "a"}, "tweet_id"),
                     ({"tweet_id": "t", "correct_label": "neutral", "reporter": "a", "at": "yesterday"}, "at:")]:
        assert why in parse_report(bad, 0)[1]


def test_the_table_decides_not_the_claim():
    entry = prediction_entry(EV, 0)
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


def test_predictions_meet_reports_on_one_partition_whoever_wrote_them():
    ids = [f"t{i}" for i in range(100)]
    grouped = by_partition(((i, {"at_ms": 0}) for i in ids), 4)
    assert sorted(i for batch in grouped.values() for i in batch) == sorted(ids)
    assert all(partition_of(i, 4) == p for p, batch in grouped.items() for i in batch)
    assert len(grouped) == 4 and partition_of("t1", 4) == partition_of("t1", 4)


def batch(at_ms: int, *ids: str) -> dict:
    return {i: {"label": "negative", "at_ms": at_ms} for i in ids}


def test_index_drops_whole_messages_by_size_and_age_per_partition():
    r = PredictionIndex(max_entries=3, max_age_ms=10 * H)
    assert r.add(0, "0:0", batch(0, "a", "b")) == [] and r.add(1, "1:0", batch(0, "x")) == []
    assert r.add(0, "0:1", batch(1, "c", "d")) == ["0:0"], "size bound, oldest message first"
    assert r.locate("a") is None and r.locate("c") == "0:1" and r.locate("x") == "1:0"
    assert r.add(0, "0:2", batch(11 * H, "e")) == ["0:1"], "age bound"
    assert r.add(0, "0:3", batch(11 * H, "e")) == [] and r.locate("e") == "0:3", "a re-scored tweet moves"
    r.forget([0])
    assert not r.known(0) and r.known(1) and r.locate("e") is None and r.locate("x") == "1:0"
    r.index(0, [("0:7", batch(20, "k2")), ("0:6", batch(10, "k1"))])
    assert r.locate("k1") == "0:6" and r.add(0, "0:8", batch(30, "k3", "k4")) == ["0:6"]

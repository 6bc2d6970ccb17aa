from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.alerting.feedback import CSV_COLUMNS, feedback_csv_text, is_misclassification, write_feedback_csv


def fb(tid, label, at, **kw):
    return {"tweet_id": tid, "correct_label": label, "reporter": "ops", "at": at, **kw}


def test_write_csv_file(tmp_path):
    rows = [
        fb("1", "negative", "2024-05-01T10:00:00Z", text="bad, \"really\"\nbad", predicted_label="positive"),
        fb("2", "neutral", "2024-05-01T10:01:00Z", text="meh"),
        fb("1", "neutral", "2024-05-01T10:05:00Z", text="bad, \"really\"\nbad", predicted_label="positive"),
        {"tweet_id": "3", "reporter": "x"},  # no label: skipped
    ]
    out = tmp_path / "fb.csv"
    assert write_feedback_csv(rows, out) == 2
    with out.open(newline="") as fh:
        got = list(csv.DictReader(fh))
    assert tuple(got[0]) == CSV_COLUMNS
    assert [(r["tweet_id"], r["correct_label"]) for r in got] == [("2", "neutral"), ("1", "neutral")]
    assert got[1]["text"] == "bad, \"really\"\nbad" and got[0]["predicted_label"] == ""
    assert write_feedback_csv(rows, tmp_path / "all.csv", latest_only=False) == 3


def test_formula_injection_is_neutralised():
    text = feedback_csv_text([fb("1", "negative", "t", text="=HYPERLINK(\"x\")", reporter="@bob")])
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["text"].startswith("'=") and row["reporter"] == "'@bob"


def test_is_misclassification():
    assert is_misclassification({"correct_label": "negative", "predicted_label": "positive"})
    assert not is_misclassification({"correct_label": "negative", "predicted_label": "negative"})
    assert is_misclassification({"correct_label": "negative"}, predicted_label="neutral")
    assert not is_misclassification({"correct_label": "negative"})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.text(min_size=1, max_size=5), st.sampled_from(["a", "b", "c"])),
                max_size=20))
def test_roundtrip_property(items):
    rows = [fb(tid, "negative", str(i), text=text) for i, (text, _, tid) in enumerate(items)]
    text = feedback_csv_text(rows, latest_only=False)
    got = list(csv.DictReader(io.StringIO(text)))
    assert len(got) == len(rows)
    for r, g in zip(rows, got, strict=True):
        assert g["text"] in (r["text"], "'" + r["text"])

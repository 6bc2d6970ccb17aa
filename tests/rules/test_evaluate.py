"""Evaluation command: metric helpers, skip without data, figures on the real data when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_app import datasets
from stream_app.rules import evaluate


def test_prf() -> None:
    m = evaluate.prf(["a", "a", "b", "b"], ["a", "b", "a", "b"], "a")
    assert m == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_skips_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--data-dir", str(tmp_path / "nothing")]) == 0
    assert "skipped" in capsys.readouterr().out


def test_bench_small() -> None:
    res = evaluate.bench(texts=list(evaluate._SAMPLE_TEXTS) * 5, repeat=1)
    assert res["n"] == 20 and res["median_ms"] > 0


@pytest.mark.data
@pytest.mark.skipif(not datasets.data_dir().is_dir(), reason="no ../shared/data")
def test_eval_on_data(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    assert evaluate.main(["--split", "heldout", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    results = data["results"]
    for name in ("airline_incident", "is_claim", "telecom_subject", "fr_incident"):
        if name in results:
            res = results[name]["heldout"]
            assert res["n"] > 100
            assert 0.0 <= res["macro_f1"] <= 1.0
            # floors well under the measured figures: catch a broken table, not a small regression
            assert res["macro_f1"] > 0.4, name


def test_airline_report_reads_agreed_labels_apart(tmp_path: Path) -> None:
    """Rows every annotator agreed on (confidence 1) get their own line; the main figure keeps every row."""
    rows = [
        ("1", "@united my flight was cancelled again", "Cancelled Flight", "1.0"),
        ("2", "@united lost my bag at the carousel", "Lost Luggage", "1"),
        ("3", "@united lost my bag at the carousel", "Cancelled Flight", "0.3591"),  # disputed label
        ("4", "@united the agent hung up on me", "Customer Service Issue", ""),
        ("5", "@united nothing to say", "Can't Tell", "1.0"),  # excluded, as in the main figure
    ]
    head = "tweet_id,text,airline_sentiment,airline_sentiment_confidence,negativereason,negativereason_confidence"
    lines = [head] + [f'{i},"{t}",negative,1.0,{r},{c}' for i, t, r, c in rows]
    (tmp_path / "airline_train.csv").write_text("\n".join(lines) + "\n")
    task = next(t for t in evaluate.TASKS if t.name == "airline_incident")
    res = evaluate.run_task(evaluate.RuleEngine.load(), task, tmp_path, "all")
    assert res is not None and res["n"] == 4
    agreed = res["agreed"]
    assert agreed["n"] == 2 and agreed["accuracy"] == 1.0  # both clear-cut tweets are right
    assert res["accuracy"] < 1.0  # the disputed row counts against the main figure
    assert "every annotator agreed on (n=2, 50%)" in evaluate.format_report(task, "all", res)

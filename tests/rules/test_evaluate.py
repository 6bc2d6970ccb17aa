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

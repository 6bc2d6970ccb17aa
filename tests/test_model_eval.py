"""The shipped model on held-out data from ../shared/data (skipped when the data is absent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream_app.datasets import airline_rows, read_csv
from stream_app.scoring.evaluate import evaluate_model
from stream_app.scoring.sentiment import SentimentModel

pytestmark = pytest.mark.data
FP32 = Path(__file__).resolve().parent.parent / "models" / ".work" / "shipped" / "model.fp32.onnx"


@pytest.fixture(scope="module")
def model(model_dir):
    return SentimentModel(model_dir, cache_size=0)


def test_tweeteval_val_macro_recall(model, shared_data):
    rows = list(read_csv(shared_data / "tweeteval_sentiment_val.csv"))
    report = evaluate_model(model, [r["text"] for r in rows], [r["label"] for r in rows])
    assert report["n"] == 2000
    assert report["macro_recall"] >= 0.71  # measured 0.738 (card); guards against a broken export or tokenizer


def test_airline_heldout_accuracy(model, shared_data):
    rows = airline_rows("heldout")
    report = evaluate_model(model, [r["text"] for r in rows], [r["airline_sentiment"] for r in rows])
    assert report["accuracy"] >= 0.80  # measured 0.815


def test_model_eval_command_binary_dataset(shared_data, tmp_path, model_dir):
    src = shared_data / "sentiment140_train_100k.csv"
    res = subprocess.run([sys.executable, "-m", "stream_app.cli", "model", "eval", "--data", str(src), "--limit",
                          "400", "--json", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BADBUZZ_MODEL_DIR": str(model_dir)})
    assert res.returncode == 0, res.stderr
    assert "binary: negative vs positive" in res.stdout and "confusion matrix" in res.stdout
    assert "macro_recall=" in res.stdout


@pytest.mark.skipif(not FP32.exists(), reason="fp32 export not present (made by models/export.py, not shipped)")
def test_int8_agrees_with_fp32(model, model_dir, shared_data, tmp_path):
    ref_dir = tmp_path / "fp32"
    ref_dir.mkdir()
    (ref_dir / "model.onnx").symlink_to(FP32)
    for name in ("tokenizer.json", "config.json"):
        (ref_dir / name).write_bytes((model_dir / name).read_bytes())
    fp32 = SentimentModel(ref_dir, cache_size=0)
    texts = [r["text"] for r in read_csv(shared_data / "tweeteval_sentiment_val.csv")][:500]
    agree = float((model.probs(texts).argmax(1) == fp32.probs(texts).argmax(1)).mean())
    assert agree >= 0.98  # measured 0.993 on all 2,000 val tweets (card)
    assert np.isfinite(agree)


@pytest.mark.skipif(not FP32.exists(), reason="fp32 export not present (made by models/export.py, not shipped)")
def test_smoothing_moves_outliers_into_weights_without_changing_fp32_outputs(monkeypatch):
    """models/smooth.py: the smoothed fp32 graph computes the same logits, with flatter MatMul inputs."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch")  # models/common.py, imported by smooth.py
    import onnxruntime as ort

    monkeypatch.syspath_prepend(str(FP32.parents[2]))
    from smooth import activation_maxima, smooth, weight_groups

    texts = ["my flight got cancelled and nobody answers", "thanks for the upgrade, lovely crew!",
             "what time does the store open tomorrow", "@user 3 hours on hold... #fail", "ok"] * 4
    model = onnx.load(str(FP32))
    before = activation_maxima(model, list(weight_groups(model)), texts)
    ratios = smooth(model, texts, alpha=0.85)
    assert len(ratios) == 24 and all(after < b for b, after in ratios.values() if b > 4)
    assert set(before) == set(ratios)

    def logits(m):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        tok = SentimentModel(FP32.parents[2] / "badbuzz-sentiment-minilm", cache_size=0)
        ids = tok.encode(texts[:5])
        width = max(map(len, ids))
        feed = {"input_ids": np.array([i + [0] * (width - len(i)) for i in ids], dtype=np.int64),
                "attention_mask": np.array([[1] * len(i) + [0] * (width - len(i)) for i in ids], dtype=np.int64)}
        return sess.run(["logits"], feed)[0]

    np.testing.assert_allclose(logits(model), logits(onnx.load(str(FP32))), atol=2e-4)


def test_masked_lm_masks_only_real_tokens(monkeypatch):
    """models/mlm.py: BERT's 15% / 80-10-10 masking, never on [CLS], [SEP] or padding."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(FP32.parents[2]))
    from mlm import mask_tokens

    cls, sep, pad, mask_id, vocab = 101, 102, 0, 103, 30522
    gen = torch.Generator().manual_seed(1)
    body = torch.randint(1000, 2000, (400, 30), generator=gen)
    padding = torch.zeros(400, 8, dtype=torch.long)
    ids = torch.cat([torch.full((400, 1), cls), body, torch.full((400, 1), sep), padding], 1)
    att = (ids != pad).long()
    special = torch.tensor([cls, sep, pad])
    inputs, labels = mask_tokens(ids, att, special, mask_id, vocab, gen)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 31:].any()  # [CLS], [SEP] and padding never chosen
    assert abs(chosen.float().sum().item() / (400 * 30) - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])  # the model must predict the original token
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    as_mask = (inputs[chosen] == mask_id).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.03 and 0.07 < kept < 0.13  # 10% kept as they were

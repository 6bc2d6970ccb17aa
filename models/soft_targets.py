"""Average the probabilities of several fine-tuned checkpoints on the training mix (distillation targets).

    python models/soft_targets.py --ckpts a/best.pt b/best.pt c/best.pt --s140 15000 --out probs.npy

An ensemble of runs that differ only by seed or recipe is more accurate than any of them; training
one student on its averaged probabilities (``train.py --soft-targets``) keeps most of that gain at
the cost of one model. Rows are in ``training_mix`` order, so the student must use the same ``--s140``
and ``--mix``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import base_encoder_dir, build_model, encoder_prefix, training_mix
from tokenizers import Tokenizer
from train import predict_probs, tokenize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpts", nargs="+", type=Path, required=True)
    ap.add_argument("--s140", type=int, default=15000)
    ap.add_argument("--mix", choices=("english", "multilingual"), default="english", help="as given to train.py")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    enc_dir = base_encoder_dir()
    tok = Tokenizer.from_file(str(enc_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    prefix = encoder_prefix(enc_dir)
    seqs = tokenize(tok, [prefix + t for t, _ in training_mix(args.s140, args.mix)], args.max_len)
    model = build_model(enc_dir).to(args.device)
    total = np.zeros((len(seqs), 3), dtype=np.float32)
    for ckpt in args.ckpts:
        model.load_state_dict(torch.load(ckpt, weights_only=False, map_location=args.device)["model"])
        total += predict_probs(model, seqs, args.device, batch=512)
        print(f"{ckpt}: done", flush=True)
    np.save(args.out, total / len(args.ckpts))


if __name__ == "__main__":
    main()

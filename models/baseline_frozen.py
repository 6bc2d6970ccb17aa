"""Recipe B for the model card: a linear head on frozen all-MiniLM-L6-v2 sentence embeddings.

    python models/baseline_frozen.py --train-rows 20000 --out models/.work/frozen.json

Same training mix and the same held-out sets as the fine-tuned model (recipe A), so the two
recipes compare on equal terms; only the encoder stays frozen.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from common import LABELS, base_encoder_dir, eval_sets, sentiment140_heldout, training_mix
from tokenizers import Tokenizer

from stream_app.scoring.evaluate import classification_report


@torch.no_grad()
def embed(encoder, tok: Tokenizer, texts: list[str], max_len: int = 64) -> np.ndarray:
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), 128):
        idx = order[s : s + 128]
        encs = tok.encode_batch([texts[i] for i in idx])
        width = min(max_len, max(len(e.ids) for e in encs))
        ids = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, e in enumerate(encs):
            n = min(width, len(e.ids))
            ids[r, :n] = torch.tensor(e.ids[:n])
            mask[r, :n] = 1
        h = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        out[idx] = ((h * m).sum(1) / m.sum(1)).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-rows", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    from transformers import AutoModel

    enc_dir = base_encoder_dir()
    encoder = AutoModel.from_pretrained(str(enc_dir)).eval()
    tok = Tokenizer.from_file(str(enc_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    rows = training_mix(15000)
    random.Random(args.seed).shuffle(rows)
    rows = rows[: args.train_rows]
    t0 = time.time()
    x = torch.from_numpy(embed(encoder, tok, [t for t, _ in rows]))
    y = torch.tensor([label for _, label in rows])
    head = torch.nn.Linear(x.shape[1], 3)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-4 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    sets = eval_sets()
    sets["sentiment140_heldout"] = sentiment140_heldout()
    results = {"recipe": "frozen all-MiniLM-L6-v2 mean pooling + linear head (LBFGS)", "train_rows": len(rows)}
    for name, data in sets.items():
        with torch.no_grad():
            probs = torch.softmax(head(torch.from_numpy(embed(encoder, tok, [t for t, _ in data]))), -1).numpy()
        gold = [LABELS[g] for _, g in data]
        if name.startswith("sentiment140"):
            pred = ["negative" if p[0] >= p[2] else "positive" for p in probs]
            r = classification_report(gold, pred, ["negative", "positive"])
        else:
            r = classification_report(gold, [LABELS[i] for i in probs.argmax(1)], list(LABELS))
        results[name] = {k: r[k] for k in ("n", "accuracy", "macro_recall", "macro_f1")}
        print(name, json.dumps(results[name]), flush=True)
    results["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

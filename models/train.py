"""Fine-tune a tweet sentiment classifier (seeded, resumable, checkpointed).

    python models/train.py --out models/.work/minilm --epochs 1

Checkpoints go to ``OUT/checkpoint.pt`` every ``--save-every`` steps; re-running the same
command resumes from it. The best epoch by TweetEval val macro-recall is kept as ``OUT/best.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from common import base_encoder_dir, build_model, eval_sets, training_mix
from tokenizers import Tokenizer
from tqdm import tqdm


def macro_recall(y_true: np.ndarray, y_pred: np.ndarray, n: int = 3) -> float:
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in range(n) if (y_true == c).any()]))


def encode(tok: Tokenizer, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    encs = tok.encode_batch(texts)
    width = min(max_len, max(len(e.ids) for e in encs))
    ids = np.zeros((len(encs), width), dtype=np.int64)
    mask = np.zeros((len(encs), width), dtype=np.int64)
    for i, e in enumerate(encs):
        n = min(width, len(e.ids))
        ids[i, :n] = e.ids[:n]
        mask[i, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def length_bucketed_batches(lengths: list[int], batch: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort within chunks of 50 batches: little padding, still random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lengths.__getitem__)
        batches += [part[i : i + batch] for i in range(0, len(part), batch)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def evaluate(model, tok, rows, max_len: int) -> dict[str, float]:
    model.eval()
    preds = []
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    for i in range(0, len(order), 128):
        idx = order[i : i + 128]
        ids, mask = encode(tok, [rows[j][0] for j in idx], max_len)
        preds += list(zip(idx, model(ids, mask).argmax(-1).tolist(), strict=True))
    model.train()
    preds.sort()
    y_pred = np.array([p for _, p in preds])
    y_true = np.array([y for _, y in rows])
    return {"accuracy": float((y_pred == y_true).mean()), "macro_recall": macro_recall(y_true, y_pred)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-5)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--s140", type=int, default=15000, help="Sentiment140 rows to add (0 = none)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between val evals (0 = per epoch)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    enc_dir = base_encoder_dir()
    tok = Tokenizer.from_file(str(enc_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    model = build_model(enc_dir)

    rows = training_mix(args.s140, args.seed)
    lengths = [len(t) for t, _ in rows]
    evals = eval_sets()
    steps_per_epoch = math.ceil(len(rows) / args.batch)
    total = int(steps_per_epoch * args.epochs)
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    warmup = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    step, best, history = 0, -1.0, []
    ckpt = args.out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, best, history = state["step"], state["best"], state["history"]
        print(f"resumed at step {step}/{total}", flush=True)

    log = open(args.out / "train.log", "a")
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    bar = tqdm(total=total, initial=step, desc="train", mininterval=10)
    t0, seen, running = time.time(), 0, 0.0
    while step < total:
        epoch = step // steps_per_epoch
        batches = length_bucketed_batches(lengths, args.batch, random.Random(args.seed + epoch))
        for b in batches[step % steps_per_epoch :]:
            if step >= total:
                break
            ids, mask = encode(tok, [rows[i][0] for i in b], args.max_len)
            y = torch.tensor([rows[i][1] for i in b])
            loss = loss_fn(model(ids, mask), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            seen += len(b)
            running = 0.98 * running + 0.02 * loss.item() if running else loss.item()
            bar.update(1)
            if step % 50 == 0:
                rate = seen / (time.time() - t0)
                log.write(
                    json.dumps(
                        {
                            "step": step,
                            "loss": round(running, 4),
                            "samples_per_s": round(rate, 1),
                            "lr": sched.get_last_lr()[0],
                        }
                    )
                    + "\n"
                )
                log.flush()
            end_epoch = step % steps_per_epoch == 0 or step == total
            if end_epoch or (args.eval_every and step % args.eval_every == 0):
                metrics = {name: evaluate(model, tok, r, args.max_len) for name, r in evals.items()}
                history.append({"step": step, **metrics})
                log.write(json.dumps(history[-1]) + "\n")
                log.flush()
                print(json.dumps(history[-1]), flush=True)
                score = metrics["tweeteval_val"]["macro_recall"]
                if score > best:
                    best = score
                    torch.save(
                        {
                            "model": model.state_dict(),
                            "step": step,
                            "metrics": metrics,
                            "args": vars(args) | {"out": str(args.out)},
                        },
                        args.out / "best.pt",
                    )
            if step % args.save_every == 0 or step == total:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "sched": sched.state_dict(),
                        "step": step,
                        "best": best,
                        "history": history,
                    },
                    ckpt,
                )
    bar.close()
    print(json.dumps({"done": True, "best_tweeteval_val_macro_recall": best}), flush=True)


if __name__ == "__main__":
    main()

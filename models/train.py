"""Fine-tune a tweet sentiment classifier (seeded, resumable, checkpointed).

    python models/train.py --out models/.work/minilm --epochs 1

Checkpoints go to ``OUT/checkpoint.pt`` every ``--save-every`` steps; re-running the same
command resumes from it. The best evaluation by the mean macro-recall of TweetEval val and French UMSAB val
(those of them evaluated, ``--eval-sets``) is kept as ``OUT/best.pt``. ``$BADBUZZ_ENCODER_DIR`` picks the
encoder (``convert_e5.py``: multilingual e5-small, ``--mix multilingual``); its text prefix (e5: ``"query: "``)
is prepended to every text and recorded in ``OUT/encoder.json`` for export and runtime.
Runs on CUDA when there is one (``--device``). ``--soft-targets`` trains a student on an ensemble's
probabilities (``soft_targets.py``); ``--time-budget`` (or ``--deadline``) fits the schedule (not just the
run) to the time: every 100 steps the average speed so far re-sizes it, never beyond ``--epochs``, so a
CPU shared with other work still ends on time with a decayed learning rate.
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
from common import base_encoder_dir, build_model, encoder_prefix, eval_sets, selection_score, training_mix
from tokenizers import Tokenizer
from tqdm import tqdm


def macro_recall(y_true: np.ndarray, y_pred: np.ndarray, n: int = 3) -> float:
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in range(n) if (y_true == c).any()]))


def tokenize(tok: Tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return [e.ids[:max_len] for e in tok.encode_batch(texts)]


def pad(seqs: list[list[int]], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


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
def predict_probs(model, seqs: list[list[int]], device: str, batch: int = 256) -> np.ndarray:
    was_training = model.training
    model.eval()
    out = np.zeros((len(seqs), 3), dtype=np.float32)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        ids, mask = pad([seqs[j] for j in idx], device)
        out[idx] = torch.softmax(model(ids, mask).float(), -1).cpu().numpy()
    model.train(was_training)
    return out


def evaluate(model, seqs: list[list[int]], gold: np.ndarray, device: str) -> dict[str, float]:
    pred = predict_probs(model, seqs, device).argmax(1)
    return {"accuracy": float((pred == gold).mean()), "macro_recall": macro_recall(gold, pred)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-5)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--s140", type=int, default=15000, help="Sentiment140 rows to add (0 = none)")
    ap.add_argument("--mix", choices=("english", "multilingual"), default="english")
    ap.add_argument("--eval-sets", help="comma-separated eval sets during training (default: all)")
    ap.add_argument("--freeze-word-embeddings", action="store_true",
                    help="no gradient on the word table: on CPU, AdamW on e5's 96M-row table costs more than the rest")
    ap.add_argument("--freeze-layers", type=int, default=0,
                    help="also freeze all embeddings and the first N encoder layers (no backward through them)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (speed checks)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--class-weighted", action="store_true", help="inverse-frequency class weights")
    ap.add_argument("--soft-targets", type=Path, help=".npy of teacher probabilities, one row per mix row")
    ap.add_argument("--distill-alpha", type=float, default=0.8, help="weight of the soft-target loss")
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between val evals (0 = per epoch)")
    ap.add_argument("--time-budget", type=float, default=0, help="seconds; fit the schedule into it")
    ap.add_argument("--deadline", help="UTC time (ISO 8601) the run must end by: sets --time-budget, rerun-safe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.deadline:
        from datetime import datetime

        args.time_budget = datetime.fromisoformat(args.deadline).timestamp() - time.time()
        if args.time_budget <= 0:
            raise SystemExit(f"deadline {args.deadline} has passed")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    args.out.mkdir(parents=True, exist_ok=True)
    enc_dir = base_encoder_dir()
    tok = Tokenizer.from_file(str(enc_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    model = build_model(enc_dir).to(args.device)
    if args.freeze_word_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    if args.freeze_layers:
        model.encoder.embeddings.requires_grad_(False)
        for layer in model.encoder.encoder.layer[: args.freeze_layers]:
            layer.requires_grad_(False)
    prefix = encoder_prefix(enc_dir)
    (args.out / "encoder.json").write_text(json.dumps({"prefix": prefix, "encoder_dir": str(enc_dir)}) + "\n")

    rows = training_mix(args.s140, args.mix)
    seqs = tokenize(tok, [prefix + t for t, _ in rows], args.max_len)
    labels = torch.tensor([y for _, y in rows])
    lengths = [len(s) for s in seqs]
    evals = {
        name: (tokenize(tok, [prefix + t for t, _ in r], args.max_len), np.array([y for _, y in r]))
        for name, r in eval_sets(args.eval_sets.split(",") if args.eval_sets else None).items()
    }
    soft = None
    if args.soft_targets:
        soft = torch.from_numpy(np.load(args.soft_targets)).float()
        if soft.shape != (len(rows), 3):
            raise SystemExit(f"{args.soft_targets}: shape {tuple(soft.shape)}, expected ({len(rows)}, 3)")
    weight = None
    if args.class_weighted:
        counts = torch.bincount(labels, minlength=3).float()
        weight = (counts.sum() / (3 * counts)).to(args.device)
    steps_per_epoch = math.ceil(len(rows) / args.batch)
    plan = {"total": int(steps_per_epoch * args.epochs)}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in trainable if any(k in n for k in ("bias", "LayerNorm"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )

    def lr_factor(s: int) -> float:
        total = plan["total"]
        warmup = max(1, int(0.06 * total))
        return min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    step, best, history = 0, -1.0, []
    ckpt = args.out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=args.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, best, history = state["step"], state["best"], state["history"]
        plan["total"] = state.get("total", plan["total"])
        print(f"resumed at step {step}/{plan['total']}", flush=True)
    print(f"{len(rows)} training rows, {plan['total']} steps planned", flush=True)

    log = open(args.out / "train.log", "a")
    model.train()
    bar = tqdm(total=plan["total"], initial=step, desc=args.out.name, mininterval=10)
    t0, seen, running = time.time(), 0, 0.0
    start_step, planned = step, int(steps_per_epoch * args.epochs)
    while step < plan["total"]:
        epoch = step // steps_per_epoch
        batches = length_bucketed_batches(lengths, args.batch, random.Random(args.seed + epoch))
        for b in batches[step % steps_per_epoch :]:
            if step >= plan["total"] or (args.max_steps and step >= args.max_steps):
                break
            ids, mask = pad([seqs[i] for i in b], args.device)
            logits = model(ids, mask)
            y = labels[b].to(args.device)
            loss = torch.nn.functional.cross_entropy(logits, y, weight=weight)
            if soft is not None:
                kl = torch.nn.functional.kl_div(
                    torch.log_softmax(logits, -1), soft[b].to(args.device), reduction="batchmean"
                )
                loss = args.distill_alpha * kl + (1 - args.distill_alpha) * loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            seen += len(b)
            running = 0.98 * running + 0.02 * loss.item() if running else loss.item()
            bar.update(1)
            if args.time_budget and (step - start_step) % 100 == 0:
                # re-fit the schedule to the average speed so far (a shared CPU's speed varies), never beyond
                # the planned epochs; 8% is kept for the evaluation passes and the last one
                elapsed = time.time() - t0
                fit = step + int((args.time_budget * 0.92 - elapsed) * (step - start_step) / elapsed)
                fit = max(step + 1, min(planned, fit))
                if fit != plan["total"]:
                    print(f"time budget: {plan['total']} -> {fit} steps", flush=True)
                    plan["total"] = fit
                    bar.total = fit
            if args.time_budget and time.time() - t0 > args.time_budget - 240 and step < plan["total"]:
                # slower than calibrated (shared CPU): end now, with the final evaluation and checkpoint
                print(f"time budget spent: ending at step {step} of {plan['total']}", flush=True)
                plan["total"] = step
            if step % 50 == 0 or step == args.max_steps:
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
            end_epoch = step % steps_per_epoch == 0 or step == plan["total"]
            if end_epoch or (args.eval_every and step % args.eval_every == 0):
                metrics = {name: evaluate(model, s, g, args.device) for name, (s, g) in evals.items()}
                score = selection_score(metrics)
                history.append(
                    {"step": step, "epoch": round(step / steps_per_epoch, 2), **metrics, "selection": round(score, 4)}
                )
                log.write(json.dumps(history[-1]) + "\n")
                log.flush()
                print(json.dumps(history[-1]), flush=True)
                if score > best:
                    best = score
                    torch.save(
                        {
                            "model": model.state_dict(),
                            "step": step,
                            "metrics": metrics,
                            "prefix": prefix,
                            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
                            | {"total_steps": plan["total"]},
                        },
                        args.out / "best.pt",
                    )
            if step % args.save_every == 0 or step == plan["total"]:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "sched": sched.state_dict(),
                        "step": step,
                        "total": plan["total"],
                        "best": best,
                        "history": history,
                    },
                    ckpt,
                )
        if args.max_steps and step >= args.max_steps:
            print(f"stopped at --max-steps {step}: {seen / (time.time() - t0):.1f} samples/s", flush=True)
            return
    bar.close()
    print(json.dumps({"done": True, "best_selection_score": best}), flush=True)


if __name__ == "__main__":
    main()

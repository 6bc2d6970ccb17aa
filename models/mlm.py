"""Domain-adaptive pre-training: continue the base encoder's masked-LM training on tweets.

    python models/mlm.py --out models/.work/dapt --epochs 2 [--time-budget 120]
    BADBUZZ_ENCODER_DIR=models/.work/dapt python models/train.py ...   # fine-tune from the adapted encoder

all-MiniLM-L6-v2 learnt sentence similarity on web text, not tweet language (@user, http, slang,
elongations). Masked-LM on the tweets of the training mix, without their labels, adapts it before
fine-tuning ("Don't Stop Pretraining", Gururangan et al., ACL 2020). The corpus is the training mix's
text only: TweetEval train, the airline training part and the Sentiment140 rows that training may use;
TweetEval val, the airline held-out part and the last Sentiment140 rows are never read. 1% of the corpus
is kept aside to report the masked-token loss and accuracy before and after.

The packaged encoder has no MLM head, so one starts fresh (its decoder tied to the word embeddings) and
trains alone for the first ``--head-steps``, so that its first, large gradients do not reach the encoder.
Only the encoder is written out: ``OUT/model.safetensors`` (same keys as the base encoder, so
``train.py``, ``soft_targets.py`` and ``export.py`` read it through ``$BADBUZZ_ENCODER_DIR``) next to the
base encoder's config and tokenizer. Seeded and resumable (``OUT/checkpoint.pt``), like ``train.py``.

Measured (MODEL_CARD.md, "Domain-adaptive pre-training"): 1.1 epochs on CPU, then recipe A from the base
and from the adapted encoder side by side: within 0.7 point of TweetEval val macro-recall at every evaluation.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import torch
from common import S140_HELDOUT, base_encoder_dir, sentiment140_shuffled, training_mix
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from train import length_bucketed_batches, pad, tokenize

MASK_RATE = 0.15  # BERT's recipe: of the chosen tokens 80% -> [MASK], 10% -> a random token, 10% kept


def corpus() -> list[str]:
    """Distinct normalized texts of everything training may read (see the module docstring)."""
    s140_allowed = len(sentiment140_shuffled()) - S140_HELDOUT
    return list(dict.fromkeys(text for text, _ in training_mix(s140_allowed)))


def mask_tokens(ids: torch.Tensor, attention: torch.Tensor, special: torch.Tensor, mask_id: int, vocab: int,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels): labels are -100 except at the masked positions."""
    candidates = attention.bool() & ~torch.isin(ids, special)
    chosen = (torch.rand(ids.shape, generator=gen) < MASK_RATE) & candidates
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    draw = torch.rand(ids.shape, generator=gen)
    inputs = ids.clone()
    inputs[chosen & (draw < 0.8)] = mask_id
    swap = chosen & (draw >= 0.8) & (draw < 0.9)
    inputs[swap] = torch.randint(vocab, ids.shape, generator=gen)[swap]
    return inputs, labels


@torch.no_grad()
def masked_scores(model, seqs: list[list[int]], masking, device: str, batch: int = 256) -> dict[str, float]:
    """Masked-token loss and accuracy on ``seqs`` with a fixed masking (same positions every time)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    loss_sum, hits, count = 0.0, 0, 0
    for start in range(0, len(seqs), batch):
        ids, att = pad(seqs[start : start + batch], "cpu")
        inputs, labels = masking(ids, att, gen)
        logits = model(input_ids=inputs.to(device), attention_mask=att.to(device)).logits.float()
        labels = labels.to(device)
        keep = labels != -100
        loss_sum += torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
        hits += int((logits[keep].argmax(-1) == labels[keep]).sum())
        count += int(keep.sum())
    model.train(was_training)
    return {"masked_loss": round(loss_sum / max(1, count), 4), "masked_accuracy": round(hits / max(1, count), 4)}


def save_encoder(model, base: Path, out: Path) -> None:
    """The adapted encoder under the base encoder's key names (its pooler, unused by us, kept as is)."""
    weights = load_file(str(base / "model.safetensors"))
    adapted = {k: v.detach().float().cpu().contiguous() for k, v in model.bert.state_dict().items()}
    unknown = set(adapted) - set(weights)
    if unknown:
        raise SystemExit(f"the MLM encoder has weights the base encoder lacks: {sorted(unknown)[:5]}")
    weights.update(adapted)
    save_file(weights, str(out / "model.safetensors"))
    for f in base.iterdir():
        if f.is_file() and f.name != "model.safetensors" and not f.name.endswith((".bin", ".pt")):
            shutil.copyfile(f, out / f.name)


def main() -> None:
    from transformers import AutoConfig, BertForMaskedLM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--limit", type=int, default=0, help="use only this many corpus texts (smoke runs)")
    ap.add_argument("--head-steps", type=int, default=200,
                    help="steps that train only the fresh MLM head, so its first gradients do not hit the encoder")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--time-budget", type=float, default=0, help="seconds; fit the schedule into it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    base = base_encoder_dir()
    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    special = torch.tensor([tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]")])
    mask_id = tok.token_to_id("[MASK]")
    config = AutoConfig.from_pretrained(str(base))
    model = BertForMaskedLM.from_pretrained(str(base), config=config).to(args.device)

    def masking(ids: torch.Tensor, att: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(ids, att, special, mask_id, config.vocab_size, gen)

    texts = corpus()
    random.Random(args.seed).shuffle(texts)
    if args.limit:
        texts = texts[: args.limit]
    aside = max(1, len(texts) // 100)
    seqs = tokenize(tok, texts, args.max_len)
    check, seqs = seqs[:aside], seqs[aside:]
    lengths = [len(s) for s in seqs]
    steps_per_epoch = -(-len(seqs) // args.batch)
    plan = {"total": max(1, int(steps_per_epoch * args.epochs))}
    no_decay = ("bias", "LayerNorm")
    opt = torch.optim.AdamW([
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ], lr=args.lr)

    def lr_factor(s: int) -> float:
        total = plan["total"]
        warmup = max(1, int(0.06 * total))
        return min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(args.seed)
    step, before = 0, None
    ckpt = args.out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=args.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        step, before, plan["total"] = state["step"], state["before"], state["total"]
        print(f"resumed at step {step}/{plan['total']}", flush=True)
    log = open(args.out / "mlm.log", "a")
    if before is None:
        before = masked_scores(model, check, masking, args.device)
        log.write(json.dumps({"step": 0, "aside": len(check), "corpus": len(seqs), **before}) + "\n")
        print(json.dumps({"before": before, "corpus": len(seqs), "steps": plan["total"]}), flush=True)

    def save_checkpoint() -> None:
        """Written aside, then renamed: a run stopped mid-write keeps the previous checkpoint."""
        part = ckpt.with_suffix(".part")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": gen.get_state(), "step": step, "total": plan["total"], "before": before}, part)
        part.replace(ckpt)

    def freeze_encoder(frozen: bool) -> None:
        for p in model.bert.parameters():
            p.requires_grad_(not frozen)

    model.train()
    freeze_encoder(step < args.head_steps)
    t0, running, start, calibrated = time.time(), 0.0, step, not args.time_budget
    while step < plan["total"]:
        epoch = step // steps_per_epoch
        batches = length_bucketed_batches(lengths, args.batch, random.Random(args.seed + epoch))
        for b in batches[step % steps_per_epoch :]:
            if step >= plan["total"]:
                break
            ids, att = pad([seqs[i] for i in b], "cpu")
            inputs, labels = masking(ids, att, gen)
            out = model(input_ids=inputs.to(args.device), attention_mask=att.to(args.device),
                        labels=labels.to(args.device))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step == args.head_steps:
                freeze_encoder(False)
            running = 0.98 * running + 0.02 * out.loss.item() if running else out.loss.item()
            elapsed = time.time() - t0
            if not calibrated and (step - start >= 50 or elapsed >= 0.1 * args.time_budget):
                calibrated = True  # the speed of the first steps decides how many fit in the budget
                fit = int((args.time_budget * 0.95 - elapsed) * (step - start) / elapsed) + step
                if fit < plan["total"]:
                    print(f"time budget: {plan['total']} -> {fit} steps", flush=True)
                    plan["total"] = max(step, fit)
            if step % 50 == 0:
                log.write(json.dumps({"step": step, "loss": round(running, 4), "lr": sched.get_last_lr()[0],
                                      "seconds": round(time.time() - t0, 1)}) + "\n")
                log.flush()
            if step % args.save_every == 0:
                save_checkpoint()
    save_checkpoint()
    after = masked_scores(model, check, masking, args.device)
    log.write(json.dumps({"step": step, "done": True, **after}) + "\n")
    log.close()
    save_encoder(model, base, args.out)
    print(json.dumps({"done": True, "steps": step, "before": before, "after": after, "encoder": str(args.out)}),
          flush=True)


if __name__ == "__main__":
    main()

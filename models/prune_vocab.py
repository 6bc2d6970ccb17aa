"""Prune e5's 250k-piece word table to the pieces tweets use (the int8 file shrinks from ~118 MB to ~35-45 MB).

    python models/prune_vocab.py --encoder models/.work/e5-small --out models/.work/e5-small-pruned \\
        [--ckpt models/.work/e5-run/best.pt --ckpt-out models/.work/e5-run/best.pruned.pt] [--holdout-eval]

Kept: the special tokens, every single-character piece (so any text in those characters still tokenizes,
spelled out, instead of becoming <unk>), the ``--keep-top`` most likely pieces of the SentencePiece model
(common words of every language), and every piece the tokenized ``../shared/data`` texts use. Ids are
remapped in id order (specials keep theirs). Unigram's Viterbi over a subset of pieces finds the same
segmentation whenever the full vocabulary's best one only uses kept pieces, so the corpus tokenizes exactly
as before; ``--holdout-eval`` builds the vocabulary without the evaluation texts and reports how many of
them then tokenize differently (the honest figure for unseen tweets).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from common import encoder_prefix, eval_sets, sentiment140_heldout
from tokenizers import Tokenizer

from stream_app.datasets import data_dir, read_csv
from stream_app.scoring.text import normalize_for_model

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
WORD_TABLE = "embeddings.word_embeddings.weight"


def corpus_texts() -> list[str]:
    """Every ``text`` of the CSV files in the shared data folder, as the model sees them."""
    texts = []
    for path in sorted(data_dir().glob("*.csv")):
        texts += [normalize_for_model(r["text"]) for r in read_csv(path) if r.get("text")]
    return list(dict.fromkeys(texts))


def evaluation_texts() -> dict[str, list[str]]:
    sets = eval_sets() | {"sentiment140_heldout": sentiment140_heldout()}
    return {name: [t for t, _ in rows] for name, rows in sets.items()}


def used_ids(tok: Tokenizer, texts: list[str]) -> set[int]:
    used: set[int] = set()
    for enc in tok.encode_batch(texts):
        used.update(enc.ids)
    return used


def kept_ids(vocab: list[list], used: set[int], keep_top: int) -> list[int]:
    """Sorted ids to keep: specials, single characters, the ``keep_top`` best-scored pieces, the used ones."""
    keep = set(used)
    keep.update(i for i, (piece, _) in enumerate(vocab) if piece in SPECIALS or len(piece) == 1)
    ranked = sorted((i for i, (p, _) in enumerate(vocab) if p not in SPECIALS), key=lambda i: -vocab[i][1])
    keep.update(ranked[:keep_top])
    return sorted(keep)


def pruned_tokenizer(spec: dict, keep: list[int]) -> dict:
    """The same tokenizer over the kept pieces, every id reference remapped."""
    new_id = {old: new for new, old in enumerate(keep)}
    spec = json.loads(json.dumps(spec))
    model = spec["model"]
    model["vocab"] = [model["vocab"][i] for i in keep]
    model["unk_id"] = new_id[model["unk_id"]]
    for tok in spec["added_tokens"]:
        tok["id"] = new_id[tok["id"]]
    for special in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    return spec


def write_pruned_encoder(src: Path, out: Path, keep: list[int]) -> None:
    from safetensors.numpy import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    state = load_file(str(src / "model.safetensors"))
    state[WORD_TABLE] = np.ascontiguousarray(state[WORD_TABLE][keep])
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["vocab_size"] = len(keep)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    spec = json.loads((src / "tokenizer.json").read_text())
    (out / "tokenizer.json").write_text(json.dumps(pruned_tokenizer(spec, keep), ensure_ascii=False))
    if (src / "encoder.json").exists():
        shutil.copyfile(src / "encoder.json", out / "encoder.json")
    np.save(out / "kept_ids.npy", np.array(keep, dtype=np.int64))  # new id -> original id


def prune_checkpoint(ckpt: Path, out: Path, keep: list[int]) -> None:
    """A fine-tuned classifier checkpoint with its word table cut to the kept rows (same order as the encoder)."""
    import torch

    state = torch.load(ckpt, weights_only=False, map_location="cpu")
    key = "encoder." + WORD_TABLE
    state["model"][key] = state["model"][key][torch.tensor(keep)].clone()
    torch.save(state, out)


def changed(full: Tokenizer, pruned: Tokenizer, keep: list[int], texts: list[str]) -> int:
    """How many texts get a different token sequence from the pruned tokenizer (mapped back to original ids)."""
    back = np.array(keep)
    return sum(
        a.ids != back[b.ids].tolist()
        for a, b in zip(full.encode_batch(texts), pruned.encode_batch(texts), strict=True)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoder", type=Path, required=True, help="encoder folder from convert_e5.py")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--keep-top", type=int, default=8000, help="best-scored pieces kept whatever the corpus")
    ap.add_argument("--holdout-eval", action="store_true", help="leave the evaluation texts out of the corpus")
    ap.add_argument("--ckpt", type=Path, help="a train.py checkpoint on --encoder to prune alike")
    ap.add_argument("--ckpt-out", type=Path)
    args = ap.parse_args()

    prefix = encoder_prefix(args.encoder)
    full = Tokenizer.from_file(str(args.encoder / "tokenizer.json"))
    full.no_truncation()
    full.no_padding()
    corpus = corpus_texts()
    evals = evaluation_texts()
    if args.holdout_eval:
        held = {t for texts in evals.values() for t in texts}
        corpus = [t for t in corpus if t not in held]
    used = used_ids(full, [prefix + t for t in corpus])
    spec = json.loads((args.encoder / "tokenizer.json").read_text())
    keep = kept_ids(spec["model"]["vocab"], used, args.keep_top)
    write_pruned_encoder(args.encoder, args.out, keep)
    pruned = Tokenizer.from_file(str(args.out / "tokenizer.json"))
    pruned.no_truncation()
    pruned.no_padding()
    report = {"corpus_texts": len(corpus), "used_ids": len(used), "kept_ids": len(keep),
              "holdout_eval": args.holdout_eval,
              "changed_tokenization": {name: [changed(full, pruned, keep, [prefix + t for t in texts]), len(texts)]
                                       for name, texts in evals.items()}}
    (args.out / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)
    if args.ckpt:
        prune_checkpoint(args.ckpt, args.ckpt_out or args.ckpt.with_suffix(".pruned.pt"), keep)


if __name__ == "__main__":
    main()

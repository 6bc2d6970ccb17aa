"""Move a training run to a rented GPU machine and back, inside a 64 MB transfer each way.

    python models/gpu_pack.py pack --out .gpu                 # here: base encoder + training data
    python models/gpu_pack.py unpack .gpu /tmp/gpu            # there: -> /tmp/gpu/encoder, /tmp/gpu/data
    python models/gpu_pack.py send-weights RUN/best.pt OUT    # there: fp16 chunks of <= 15 MB
    python models/gpu_pack.py receive-weights OUT RUN/best.pt # here: back to an fp32 checkpoint

The base encoder travels with fp16 weights and int8 word embeddings (one scale per row; the
rounding is far below what fine-tuning changes). Data files travel xz-compressed with only the
columns training reads; they stay out of git (``.gpu/`` is ignored) and are never committed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import lzma
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_encoder_dir  # noqa: E402

from stream_app.datasets import data_dir  # noqa: E402

DATA_COLUMNS = {
    "tweeteval_sentiment_train.csv": ("text", "label"),
    "tweeteval_sentiment_val.csv": ("text", "label"),
    "sentiment140_train_100k.csv": ("text", "label"),
    "airline_train.csv": ("tweet_id", "text", "airline_sentiment"),
}
ENCODER_FILES = ("config.json", "tokenizer.json")
ROWWISE_INT8 = "embeddings.word_embeddings.weight"


def pack(out: Path) -> None:
    enc = base_encoder_dir()
    (out / "encoder").mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name in ENCODER_FILES:
        shutil.copyfile(enc / name, out / "encoder" / name)
    packed = {}
    for key, t in load_file(str(enc / "model.safetensors")).items():
        if key.endswith(ROWWISE_INT8):
            scale = t.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
            packed[key + ".q"] = torch.round(t / scale).to(torch.int8)
            packed[key + ".scale"] = scale.float()
        else:
            packed[key] = t.half()
    save_file(packed, str(out / "encoder" / "packed.safetensors"))
    for name, cols in DATA_COLUMNS.items():
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(cols)
        with open(data_dir() / name, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                writer.writerow([row[c] for c in cols])
        (out / "data" / (name + ".xz")).write_bytes(lzma.compress(buf.getvalue().encode()))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 1e6:.1f} MB")


def unpack(src: Path, dst: Path) -> None:
    (dst / "encoder").mkdir(parents=True, exist_ok=True)
    (dst / "data").mkdir(parents=True, exist_ok=True)
    for name in ENCODER_FILES:
        shutil.copyfile(src / "encoder" / name, dst / "encoder" / name)
    packed = load_file(str(src / "encoder" / "packed.safetensors"))
    weights = {}
    for key, t in packed.items():
        if key.endswith(".scale"):
            continue
        if key.endswith(".q"):
            base = key[:-2]
            weights[base] = t.float() * packed[base + ".scale"]
        else:
            weights[key] = t.float()
    save_file(weights, str(dst / "encoder" / "model.safetensors"))
    for f in (src / "data").glob("*.xz"):
        (dst / "data" / f.stem).write_bytes(lzma.decompress(f.read_bytes()))
    print(f"unpacked to {dst}")


def send_weights(ckpt: Path, out: Path, chunk_mb: float = 15.0) -> None:
    """fp16 tensors in files of at most ``chunk_mb``; a bigger tensor is cut into row blocks."""
    state = torch.load(ckpt, weights_only=False, map_location="cpu")
    out.mkdir(parents=True, exist_ok=True)
    limit = int(chunk_mb * 1e6)
    pieces = []
    for key, t in state["model"].items():
        t = t.half().contiguous()
        rows = max(1, limit // max(1, t[0].numel() * 2)) if t.dim() > 1 else len(t)
        blocks = torch.split(t, rows) if t.numel() * 2 > limit else (t,)
        pieces += [(f"{key}@{i}" if len(blocks) > 1 else key, b.contiguous()) for i, b in enumerate(blocks)]
    chunk, size, n = {}, 0, 0
    for key, t in pieces:
        if chunk and size + t.numel() * 2 > limit:
            save_file(chunk, str(out / f"weights-{n}.safetensors"))
            chunk, size, n = {}, 0, n + 1
        chunk[key] = t
        size += t.numel() * 2
    save_file(chunk, str(out / f"weights-{n}.safetensors"))
    meta = {k: state[k] for k in ("step", "metrics", "args") if k in state}
    (out / "weights.json").write_text(json.dumps(meta, indent=2))


def receive_weights(src: Path, ckpt: Path) -> None:
    flat = {}
    for f in sorted(src.glob("weights-*.safetensors")):
        flat |= {k: t.float() for k, t in load_file(str(f)).items()}
    model, blocks = {}, {}
    for key, t in flat.items():
        if "@" in key:
            base, i = key.rsplit("@", 1)
            blocks.setdefault(base, {})[int(i)] = t
        else:
            model[key] = t
    for base, parts in blocks.items():
        model[base] = torch.cat([parts[i] for i in sorted(parts)])
    meta = json.loads((src / "weights.json").read_text())
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, **meta}, ckpt)
    print(f"{ckpt}: {len(model)} tensors, step {meta.get('step')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pack").add_argument("--out", type=Path, default=Path(".gpu"))
    p = sub.add_parser("unpack")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p = sub.add_parser("send-weights")
    p.add_argument("ckpt", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("receive-weights")
    p.add_argument("src", type=Path)
    p.add_argument("ckpt", type=Path)
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.out)
    elif args.cmd == "unpack":
        unpack(args.src, args.dst)
    elif args.cmd == "send-weights":
        send_weights(args.ckpt, args.out)
    else:
        receive_weights(args.src, args.ckpt)


if __name__ == "__main__":
    main()

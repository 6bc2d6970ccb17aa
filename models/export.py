"""Export a trained checkpoint to ONNX (fp32, opset 17, dynamic batch and sequence axes).

python models/export.py --ckpt models/.work/minilm/best.pt --out models/.work/minilm/model.fp32.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import base_encoder_dir, build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()

    model = build_model(base_encoder_dir())
    state = torch.load(args.ckpt, weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (ids, mask),
        str(args.out),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "logits": {0: "batch"},
        },
        opset_version=args.opset,
        dynamo=False,
    )
    print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

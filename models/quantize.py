"""Dynamic int8 quantization of the fp32 ONNX model, with the variants we compare.

    python models/quantize.py --fp32 models/.work/minilm/model.fp32.onnx --out-dir models/.work/minilm/q

Writes one file per variant (plain, per-channel, transformer-optimized + int8, both) so
`models/evaluate.py` can measure accuracy and speed of each and we keep the best.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic


def optimize(fp32: Path, out: Path) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384, opt_level=1)
    opt.save_model_to_file(str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fp32", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    optimized = optimize(args.fp32, args.out_dir / "fp32.opt.onnx")
    for name, src, per_channel in [
        ("int8.onnx", args.fp32, False),
        ("int8.perchannel.onnx", args.fp32, True),
        ("int8.opt.onnx", optimized, False),
        ("int8.opt.perchannel.onnx", optimized, True),
    ]:
        out = args.out_dir / name
        # Fused ops of the optimizer (com.microsoft domain) defeat shape inference: name the float type.
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        print(f"{out} {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

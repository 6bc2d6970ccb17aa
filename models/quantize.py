"""Dynamic int8 quantization of the fp32 ONNX model, with the variants we compare.

    python models/quantize.py --fp32 models/.work/minilm/model.fp32.onnx --out-dir models/.work/minilm/q

Writes one file per variant (plain, per-channel, transformer-optimized + int8, both, and an 8-bit
weight-only MatMulNBits variant that keeps activations in fp32) so `models/evaluate.py` can measure
accuracy and speed of each and we keep the best.
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
    out = args.out_dir / "int8.weightonly.onnx"
    weight_only(args.fp32, out)
    print(f"{out} {out.stat().st_size / 1e6:.1f} MB")


def weight_only(fp32: Path, out: Path) -> Path:
    """int8 weights in blocks of 32, fp32 activations (MatMulNBits); embeddings stay fp32 (Gather: 4-bit only)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(str(fp32), bits=8, block_size=32, is_symmetric=True, accuracy_level=0,
                             op_types_to_quantize=("MatMul",))
    q.process()
    q.model.save_model_to_file(str(out), use_external_data_format=False)
    return out


if __name__ == "__main__":
    main()

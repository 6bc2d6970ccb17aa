"""Dynamic int8 quantization of the fp32 ONNX model, with the variants we compare.

    python models/quantize.py --fp32 models/.work/minilm/model.fp32.onnx --out-dir models/.work/minilm/q

Writes one file per variant (plain, per-channel, transformer-optimized + int8, both, an 8-bit
weight-only MatMulNBits variant that keeps activations in fp32, and the shipped "smooth" variant:
SmoothQuant, uint8 q/k/v weights, FFN output projections of layers 0-2 in fp32) so `models/evaluate.py` can measure
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
    ap.add_argument("--alpha", type=float, default=0.85, help="SmoothQuant migration strength")
    ap.add_argument("--mix", choices=("english", "multilingual"), default="english",
                    help="training mix the calibration tweets come from (train.py's --mix)")
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
    out = args.out_dir / "int8.smooth.onnx"
    smooth_mixed(args.fp32, out, alpha=args.alpha, mix=args.mix)
    print(f"{out} {out.stat().st_size / 1e6:.1f} MB")
    out = args.out_dir / "int8.weightonly.onnx"
    weight_only(args.fp32, out)
    print(f"{out} {out.stat().st_size / 1e6:.1f} MB")
    out = args.out_dir / "int8.weightonly.rowemb.onnx"
    weight_only_rowemb(args.fp32, out)
    print(f"{out} {out.stat().st_size / 1e6:.1f} MB")


def smooth_mixed(fp32: Path, out: Path, *, alpha: float, fp32_ffn_layers: tuple[int, ...] = (0, 1, 2),
                 calibration: int = 512, seed: int = 7, mix: str = "english") -> Path:
    """SmoothQuant (models/smooth.py), then per-channel dynamic int8: uint8 weights for the attention's
    q/k/v projections, int8 for the other MatMuls, the FFN output projections of the first layers fp32.

    Each choice measured (MODEL_CARD.md, "int8 vs fp32"): after smoothing, the FFN output projections
    (input: the GELU output) of the first three layers were the largest remaining source of
    disagreement with fp32; uint8 (asymmetric) weights agree better than int8 ones and cost little on q/k/v;
    one int8 scale for the whole word-embedding table cost half a point of agreement, one per token
    does not (the small position/type tables stay fp32).
    """
    import random
    import tempfile

    from common import training_mix
    from smooth import smooth

    train = [t for t, _ in training_mix(0, mix)]
    model = onnx.load(str(fp32))
    smooth(model, random.Random(seed).sample(train, calibration), alpha)
    embedding_nodes = per_row_int8_embeddings(model)
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    ffn_out = [n for n in matmuls if "/output/dense/" in n and "/attention/" not in n
               and any(f"/layer.{k}/" in n for k in fp32_ffn_layers)]
    qkv = [n for n in matmuls if "/attention/self/" in n and any(p in n for p in ("query", "key", "value"))]
    fp = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    with tempfile.TemporaryDirectory() as tmp:
        smoothed, first = Path(tmp) / "smoothed.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(smoothed))
        quantize_dynamic(str(smoothed), str(first), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=ffn_out + qkv + embedding_nodes,
                         extra_options=fp)
        quantize_dynamic(str(first), str(out), weight_type=QuantType.QUInt8, per_channel=True,
                         nodes_to_quantize=qkv, extra_options=fp)
    return out


def per_row_int8_embeddings(model: onnx.ModelProto, min_rows: int = 10_000) -> list[str]:
    """Word embeddings as int8 with one scale per token (quantize_dynamic gives the table one scale).

    Gather(int8 table) -> Cast -> Mul(Gather(scales)); rewrites ``model`` in place and returns the new
    nodes' names so the quantizer leaves them alone.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    names: list[str] = []
    for node in list(model.graph.node):
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or len(table.dims) != 2 or table.dims[0] < min_rows:
            continue
        w = numpy_helper.to_array(table)
        scale = np.maximum(np.abs(w).max(1, keepdims=True), 1e-8) / 127.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        base = node.name or node.output[0]
        table.CopyFrom(numpy_helper.from_array(q, table.name))
        model.graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32), f"{table.name}_row_scale"))
        new = [
            helper.make_node("Gather", [table.name, node.input[1]], [f"{base}_q"], name=f"{base}_q", axis=0),
            helper.make_node("Cast", [f"{base}_q"], [f"{base}_f"], name=f"{base}_cast", to=onnx.TensorProto.FLOAT),
            helper.make_node("Gather", [f"{table.name}_row_scale", node.input[1]], [f"{base}_s"],
                             name=f"{base}_scale", axis=0),
            helper.make_node("Mul", [f"{base}_f", f"{base}_s"], [node.output[0]], name=f"{base}_dequant"),
        ]
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for k, n in enumerate(new):
            model.graph.node.insert(at + k, n)
        names += [n.name for n in new]
    return names


def weight_only(fp32: Path, out: Path) -> Path:
    """int8 weights in blocks of 32, fp32 activations (MatMulNBits); embeddings stay fp32 (Gather: 4-bit only)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(str(fp32), bits=8, block_size=32, is_symmetric=True, accuracy_level=0,
                             op_types_to_quantize=("MatMul",))
    q.process()
    q.model.save_model_to_file(str(out), use_external_data_format=False)
    return out


def weight_only_rowemb(fp32: Path, out: Path) -> Path:
    """``weight_only`` with the word table int8 per token too: activations stay fp32 (e5's outliers make dynamic
    int8 disagree with fp32 on ~5% of tweets), and a big pruned vocabulary still fits the size budget."""
    tmp = out.with_suffix(".tmp.onnx")
    weight_only(fp32, tmp)
    model = onnx.load(str(tmp))
    per_row_int8_embeddings(model)
    onnx.save(model, str(out))
    tmp.unlink()
    return out


if __name__ == "__main__":
    main()

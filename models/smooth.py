"""SmoothQuant for the fp32 ONNX export, before dynamic int8 quantization.

    python models/smooth.py --fp32 .work/gpu/model.fp32.onnx --out .work/gpu/q/fp32.smooth.onnx --alpha 0.5

Dynamic int8 gives every MatMul input one scale per batch, so a few activation channels far larger
than the rest (the known outlier features of BERT-style encoders) leave the other channels a handful of
int8 levels. SmoothQuant (Xiao et al., 2023) divides each input channel j by
s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) and multiplies row j of the weight by s_j: the fp32 product
is unchanged, and the outliers move into the weights, which are quantized per output channel.
The encoder is post-LayerNorm (a LayerNorm output also feeds the residual), so the division cannot be
folded into the LayerNorm: it is an explicit Mul in front of each group of MatMuls sharing an input.
Activation maxima come from training tweets only (TweetEval train and the airline train split).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from common import base_encoder_dir, serving_tokenizer_json, training_mix
from onnx import helper, numpy_helper
from tokenizers import Tokenizer


def weight_groups(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """MatMuls with a 2-D weight initializer, grouped by their activation input."""
    inits = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            groups[node.input[0]].append(node)
    return groups


def activation_maxima(model: onnx.ModelProto, names: list[str], texts: list[str],
                      batch: int = 32) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each named tensor over the calibration tweets (padding included, as at run time)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_str(serving_tokenizer_json(base_encoder_dir()))  # with the encoder's prefix, as served
    tok.enable_truncation(64)
    tok.enable_padding()
    amax: dict[str, np.ndarray] = {}
    for i in range(0, len(texts), batch):
        enc = tok.encode_batch(texts[i:i + batch])
        feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
        outs = session.run(names, feed)
        for name, x in zip(names, outs, strict=True):
            m = np.abs(x).reshape(-1, x.shape[-1]).max(0)
            amax[name] = np.maximum(amax[name], m) if name in amax else m
    return amax


def smooth(model: onnx.ModelProto, texts: list[str], alpha: float) -> dict[str, float]:
    """Rewrite ``model`` in place; returns each group's outlier ratio (max/median channel) before and after."""
    groups = weight_groups(model)
    amax = activation_maxima(model, list(groups), texts)
    inits = {i.name: i for i in model.graph.initializer}
    ratios: dict[str, float] = {}
    for k, (act, nodes) in enumerate(groups.items()):
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        wmax = np.max([np.abs(w).max(1) for w in weights], axis=0)
        a = np.maximum(amax[act], 1e-5)
        s = np.clip(a ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha), 1e-3, 1e3).astype(np.float32)
        ratios[act] = float(a.max() / np.median(a)), float((a / s).max() / np.median(a / s))
        for node, w in zip(nodes, weights, strict=True):
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32),
                                                                   node.input[1]))
        inv_name, out_name = f"smooth_{k}_inv_scale", f"{act}_smoothed"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv_name))
        mul = helper.make_node("Mul", [act, inv_name], [out_name], name=f"smooth_{k}")
        first = min(list(model.graph.node).index(n) for n in nodes)
        model.graph.node.insert(first, mul)
        for node in nodes:
            node.input[0] = out_name
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fp32", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="smoothed fp32 model (quantize it next)")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--calibration", type=int, default=512, help="training tweets for the maxima")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    train = [t for t, _ in training_mix(0)]
    texts = random.Random(args.seed).sample(train, args.calibration)
    model = onnx.load(str(args.fp32))
    ratios = smooth(model, texts, args.alpha)
    onnx.checker.check_model(model)
    onnx.save(model, str(args.out))
    worst = sorted(ratios.items(), key=lambda kv: -kv[1][0])[:5]
    for name, (before, after) in worst:
        print(f"outlier ratio {before:7.1f} -> {after:6.1f}  {name}")
    print(f"{args.out}: {len(ratios)} groups smoothed, alpha {args.alpha}")


if __name__ == "__main__":
    main()

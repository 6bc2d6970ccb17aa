"""The shipped ONNX sentiment model: loads, deterministic, calibrated outputs, obvious cases right."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.scoring.sentiment import LRUCache, ModelLoadError, SentimentModel
from stream_app.scoring.text import normalize_for_model


@pytest.fixture(scope="module")
def model(model_dir):
    return SentimentModel(model_dir, threads=1)


def test_config_describes_model(model):
    assert model.labels == ("negative", "neutral", "positive")
    assert model.name and model.version
    assert model.config["metrics"], "config.json must carry the measured metrics"


def test_probabilities_sum_to_one_and_are_deterministic(model):
    texts = ["great crew, smooth flight", "my bag is lost", "boarding at gate 12", "?", "😡" * 50, "a " * 400]
    first = model.probs_normalized([normalize_for_model(t) for t in texts])
    second = model.probs_normalized([normalize_for_model(t) for t in reversed(texts)])[::-1]
    assert np.allclose(first.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(first, second, atol=1e-5), "input order must not change the scores"


@pytest.mark.parametrize(("text", "label"), [
    ("I absolutely love this airline, the crew was wonderful and the flight was perfect! Thank you!", "positive"),
    ("Best customer service ever, they fixed my problem in two minutes. Amazing!", "positive"),
    ("Worst airline ever. Lost my luggage, cancelled my flight and nobody answers. Disgusting.", "negative"),
    ("My internet has been down for three days and support keeps hanging up on me. Terrible.", "negative"),
    ("The flight to Boston departs from terminal 2 at 6:15pm tomorrow.", "neutral"),
])
def test_unambiguous_tweets(model, text, label):
    assert model.predict([text])[0].label == label


def test_parallel_sub_batches_score_like_one_run_at_a_time(model, model_dir):
    texts = [normalize_for_model(f"tweet {i}: " + "so late again " * (i % 7)) for i in range(150)]
    par = SentimentModel(model_dir, threads=1, parallel=3, cache_size=0)
    seq = SentimentModel(model_dir, threads=1, parallel=1, cache_size=0)
    assert par.parallel == 3 and seq._pool is None
    # same sub-batches (32 length-sorted tweets each), run side by side or one after the other
    assert np.allclose(par.probs_normalized(texts), seq.probs_normalized(texts), atol=1e-5)


def test_thread_defaults_share_the_cores(model_dir, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    for env in ("BADBUZZ_ORT_THREADS", "BADBUZZ_ORT_PARALLEL"):
        monkeypatch.delenv(env, raising=False)

    def split(**kw) -> tuple[int, int]:
        m = SentimentModel(model_dir, cache_size=0, **kw)
        return m.threads, m.parallel

    assert split() == (1, 4)
    assert split(threads=2) == (2, 2)
    monkeypatch.setenv("BADBUZZ_ORT_PARALLEL", "1")
    assert split() == (4, 1)


def test_cache_returns_same_scores_and_counts_hits(model_dir):
    m = SentimentModel(model_dir, threads=1, cache_size=2)
    a = m.probs(["RT so bad", "so bad", "fine"])
    b = m.probs(["so bad"])
    assert m.cache.hits == 1 and len(m.cache) == 2
    assert np.allclose(a[1], b[0])


def test_lru_evicts_oldest():
    cache = LRUCache(2)
    for k in "abc":
        cache.put(k, np.zeros(3))
    assert cache.get("a") is None and cache.get("c") is not None


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="model.onnx"):
        SentimentModel(tmp_path)


def test_normalization_matches_tweeteval():
    assert normalize_for_model("@United hi https://t.co/xyz &amp; \\u2019ok") == "@user hi http & \u2019ok"


def test_retweets_are_scored_as_the_original_and_hit_the_cache(model_dir):
    from stream_app.enrich import Enricher
    from stream_app.rules.engine import RuleEngine
    from stream_app.scoring.text import retweeted_text

    assert retweeted_text("RT @ana_b: RT @air: bags lost again") == "bags lost again"
    assert retweeted_text("  RT @ana: ok") == "ok"
    assert retweeted_text("RT @ana:") == "RT @ana:"  # nothing retweeted: keep the text
    assert retweeted_text("ART @ana: no") == "ART @ana: no"
    assert retweeted_text("RT @a " + " " * 50_000 + "x") == "x"

    enricher = Enricher(SentimentModel(model_dir, threads=1, cache_size=100), RuleEngine.load())
    original = "@airparadis 3 days and still no luggage, no compensation. Disgusting"
    first = enricher.enrich([{"id": "1", "text": original}])[0]
    cache = enricher.model.cache
    hits = cache.hits
    copies = enricher.enrich([{"id": "2", "text": f"RT @maria_l: {original}"},
                              {"id": "3", "text": f"RT @bob: RT @maria_l: {original}"}])
    assert cache.hits == hits + 2
    assert all(c["sentiment"] == first["sentiment"] for c in copies)
    assert copies[1]["text"].startswith("RT @bob")  # the event keeps the tweet as written


def test_sentiment_is_marked_unreliable_outside_the_model_card_languages(enricher):
    tweets = [{"id": "en1", "text": "@united lost my bag again, worst airline", "brand": "united", "lang": "en"},
              {"id": "fr1", "text": "@freebox vol annulé sans prévenir, je veux un remboursement", "brand": "freebox",
               "lang": "fr"}]
    en, fr = enricher.enrich(tweets)
    langs = set(enricher.model.languages)
    assert en["sentiment"]["reliable"] is ("en" in langs)
    assert fr["lang"] == "fr" and fr["sentiment"]["reliable"] is ("fr" in langs)

"""Input keys: one brand's storm must spread over the partitions (enrichment is stateless)."""

from __future__ import annotations

from collections import Counter

from aiokafka.partitioner import DefaultPartitioner

from stream_app.bench import make_tweets
from stream_app.events import tweet_key


def test_a_one_brand_storm_spreads_over_every_partition():
    storm = [t for t in make_tweets(3000, seed=1) if t["brand"] == "airparadis"]
    partitions = [0, 1, 2, 3]
    counts = Counter(DefaultPartitioner()(tweet_key(t), partitions, partitions) for t in storm)
    assert set(counts) == set(partitions)
    assert max(counts.values()) < 0.35 * len(storm), counts  # brand keys: all of it on one partition


def test_the_key_is_the_tweet_id():
    assert tweet_key({"id": "42", "brand": "airparadis"}) == b"42"
    assert tweet_key({"text": "no id"}) is None

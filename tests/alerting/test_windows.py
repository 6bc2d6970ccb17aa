from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_app.alerting.windows import Buckets, bucket_of, sample_from_tweet, to_epoch, top_samples

from .helpers import B0, T0, tweet


def test_bucket_math():
    b = Buckets(60)
    assert b.bucket_of(T0) == B0
    assert b.bucket_of(T0 + 59.999) == B0
    assert b.bucket_of(T0 + 60) == B0 + 1
    assert b.bucket_of("2024-05-01T10:00:30Z") == B0
    assert b.bucket_of(datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)) == B0
    assert b.bucket_of(datetime(2024, 5, 1, 10, 0, 30)) == B0  # naive = UTC
    assert b.span(B0 + 4, 5) == ("2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z")
    assert b.per_minutes(5) == 5 and Buckets(300).per_minutes(5) == 1 and Buckets(120).per_minutes(5) == 3
    assert bucket_of(T0 - 1) == B0 - 1
    with pytest.raises(ValueError):
        Buckets(0)


def test_samples_bounded_and_most_telling_first():
    samples = [sample_from_tweet(tweet(i, followers=10 ** (i % 7))) for i in range(20)]
    top = top_samples(samples + samples, 5)
    assert len(top) == 5 and len({s["id"] for s in top}) == 5, "one sample per tweet"
    assert top[0]["score"] >= top[-1]["score"]
    assert top[0]["author"] in {f"user{i}" for i in range(20) if i % 7 == 6}


def test_to_epoch_rejects_bool():
    with pytest.raises(TypeError):
        to_epoch(True)

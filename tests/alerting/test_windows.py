from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.alerting.windows import (
    Buckets,
    Ewma,
    WindowCounts,
    bucket_of,
    earlier_window_values,
    parse_table_key,
    table_key,
    to_epoch,
    window_sum,
)

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


def test_table_key_roundtrip():
    assert parse_table_key(table_key("air|france", 42)) == ("air|france", 42)


def test_window_counts_add_and_roundtrip():
    wc = WindowCounts()
    wc.add_tweet(tweet(1, incident="baggage", claim=True))
    wc.add_tweet(tweet(2, negative=False))
    wc.add_misclassification()
    assert (wc.tweets, wc.negative, wc.claims, wc.incidents, wc.misclassified) == (2, 1, 1, {"baggage": 1}, 1)
    assert len(wc.samples) == 1 and wc.samples[0]["id"] == "1"
    d = wc.to_dict()
    assert WindowCounts.from_dict(d) == wc
    total = wc + WindowCounts.from_dict(d)
    assert total.tweets == 4 and total.incidents == {"baggage": 2}


def test_samples_bounded_and_most_telling_first():
    wc = WindowCounts()
    for i in range(20):
        wc.add_tweet(tweet(i, followers=10 ** (i % 7)))
    assert len(wc.samples) == 5
    assert wc.samples[0]["score"] >= wc.samples[-1]["score"]
    assert wc.samples[0]["author"] in {f"user{i}" for i in range(20) if i % 7 == 6}


def test_window_sum_missing_buckets_are_zero():
    hist = {B0: WindowCounts(tweets=3), B0 + 2: WindowCounts(tweets=4).to_dict()}
    assert window_sum(hist, B0 + 2, 3).tweets == 7
    assert window_sum(hist, B0 + 2, 1).tweets == 4


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=50),
       st.floats(min_value=0.01, max_value=1.0))
def test_ewma_bounds(values, alpha):
    e = Ewma.over(values, alpha)
    assert min(values) - 1e-6 <= e.mean <= max(values) + 1e-6
    assert e.var >= -1e-9 and e.n == len(values)
    assert Ewma.from_dict(e.to_dict()) == e


def test_ewma_constant_series_has_zero_variance_and_tracks_level_shift():
    e = Ewma.over([10.0] * 10, 0.3)
    assert e.mean == 10 and e.std == 0
    e.update(20)
    assert math.isclose(e.mean, 13.0) and e.std > 0


def test_earlier_windows_respect_first_seen():
    hist = {b: WindowCounts(negative=1) for b in range(B0, B0 + 30)}
    # current window = last 5 buckets ending B0+29 -> starts at B0+25; earlier full windows: 5 (B0..B0+24)
    vals = earlier_window_values(hist, B0 + 25, 5, 12, lambda w: w.negative)
    assert vals == [5.0] * 5
    assert earlier_window_values(hist, B0 + 25, 5, 2, lambda w: w.negative) == [5.0, 5.0]
    assert earlier_window_values({}, B0, 5, 12, lambda w: w.negative) == []


def test_to_epoch_rejects_bool():
    with pytest.raises(TypeError):
        to_epoch(True)

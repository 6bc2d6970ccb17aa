"""Input parsing: every kind of bad input gets a code; the parser agrees with the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.parsing import InvalidTweet, parse_time, parse_tweet

NOW = 1_795_000_000_000  # 2026-11-18
SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "tweet.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_minimal_tweet_uses_kafka_timestamp():
    t = parse_tweet(b'{"id": "1", "text": "hello"}', fallback_ms=NOW, now_ms=NOW)
    assert t["id"] == "1" and t["text"] == "hello"
    assert t["event_time_ms"] == NOW and t["created_at"].endswith("Z")
    assert t["brand"] is None and t["is_retweet"] is False


def test_full_tweet_normalizes_brand_and_time():
    raw = {"id": "9", "text": "my bag is lost", "created_at": "2026-11-18T10:00:00+01:00", "lang": "en",
           "brand": "@AirParadis", "author": {"id": "u1", "handle": "jo", "followers": 12000},
           "is_retweet": True, "retweet_of": "8"}
    t = parse_tweet(orjson.dumps(raw), now_ms=NOW)
    assert t["brand"] == "airparadis"
    assert t["created_at"] == "2026-11-18T09:00:00.000Z"
    assert t["author"] == {"id": "u1", "handle": "jo", "followers": 12000}
    assert t["retweet_of"] == "8"


@pytest.mark.parametrize("value", [1_795_000_000_000, "2026-11-18T10:00:00Z", "Wed Nov 18 10:00:00 +0000 2026",
                                   "2026-11-18 02:00:00 -0800"])
def test_time_formats(value):
    assert parse_time(value, now_ms=NOW) > 0


def test_twitter_v2_envelope():
    raw = {
        "data": {"id": "1460323737035677698", "text": "@united lost my luggage again", "author_id": "42",
                 "created_at": "2026-11-18T08:00:00.000Z", "lang": "en",
                 "referenced_tweets": [{"type": "replied_to", "id": "77"}]},
        "includes": {"users": [{"id": "42", "username": "traveler", "public_metrics": {"followers_count": 5400}}]},
        "matching_rules": [{"id": "1", "tag": "United"}],
    }
    t = parse_tweet(orjson.dumps(raw), now_ms=NOW)
    assert (t["id"], t["brand"], t["in_reply_to"], t["is_retweet"]) == ("1460323737035677698", "united", "77", False)
    assert t["author"] == {"id": "42", "handle": "traveler", "followers": 5400}


BAD = {
    "not_utf8": b'{"id": "1", "text": "\xff\xfe"}',
    "invalid_json": b'{"id": "1", "text": ',
    "not_object": b'["id", "text"]',
    "missing_field": b'{"text": "no id"}',
    "invalid_field": b'{"id": 5, "text": "numeric id"}',
    "empty_text": b'{"id": "1", "text": "   "}',
    "text_too_long": orjson.dumps({"id": "1", "text": "x" * 1_000_000}),
    "timestamp_out_of_range": b'{"id": "1", "text": "hi", "created_at": "1999-01-01T00:00:00Z"}',
}


@pytest.mark.parametrize("code", sorted(BAD))
def test_bad_input_codes(code):
    with pytest.raises(InvalidTweet) as err:
        parse_tweet(BAD[code], now_ms=NOW)
    assert err.value.code == code
    assert err.value.message


@pytest.mark.parametrize("raw", [
    b'{"id": "1", "text": "hi", "author": {"followers": -3}}',
    b'{"id": "1", "text": "hi", "author": "bob"}',
    b'{"id": "1", "text": "hi", "is_retweet": "yes"}',
    b'{"id": "1", "text": "hi", "created_at": "yesterday"}',
    b'{"id": "1", "text": "hi", "created_at": "2099-01-01T00:00:00Z"}',
    b'{"id": "1", "text": 42}',
    b'{"id": "1", "text": null}',
    b'{"id": "", "text": "hi"}',
    b'{"id": "1", "text": "hi", "lang": ["en"]}',
])
def test_wrong_types_are_rejected(raw):
    with pytest.raises(InvalidTweet):
        parse_tweet(raw, now_ms=NOW)


def test_deeply_nested_json_is_rejected_not_crashing():
    raw = b'{"id": "1", "text": "hi", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidTweet) as err:
        parse_tweet(raw, now_ms=NOW)
    assert err.value.code == "invalid_json"


def test_control_characters_and_emoji_only_are_valid_text():
    assert parse_tweet(orjson.dumps({"id": "1", "text": "\u0007bell\u0000"}), now_ms=NOW)["text"]
    assert parse_tweet(orjson.dumps({"id": "2", "text": "😡😡😡"}), now_ms=NOW)["text"] == "😡😡😡"


flat_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**13), st.text(max_size=30))
candidates = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=5), st.integers(0, 9), st.none()),
        "text": st.one_of(st.text(max_size=20), st.integers(0, 9), st.none()),
        "lang": st.one_of(st.none(), st.text(max_size=3), st.integers(0, 2)),
        "brand": st.one_of(st.none(), st.text(max_size=5), st.booleans()),
        "is_retweet": st.one_of(st.booleans(), st.none(), st.text(max_size=2)),
        "author": st.one_of(st.none(), st.text(max_size=2), st.fixed_dictionaries(
            {}, optional={"followers": st.one_of(st.none(), st.integers(-3, 10**6), st.text(max_size=2))})),
        "extra": flat_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(candidates)
def test_parser_agrees_with_schema(obj):
    """Without event time, the parser accepts exactly what the JSON Schema accepts."""
    schema_ok = VALIDATOR.is_valid(obj)
    try:
        parse_tweet(orjson.dumps(obj), now_ms=NOW)
        parser_ok = True
    except InvalidTweet:
        parser_ok = False
    if obj.get("is_retweet", False) is None:  # null is_retweet: schema says boolean; parser must refuse too
        assert not parser_ok
    assert parser_ok == schema_ok, obj


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(raw):
    try:
        parse_tweet(raw, now_ms=NOW)
    except InvalidTweet as exc:
        assert exc.code

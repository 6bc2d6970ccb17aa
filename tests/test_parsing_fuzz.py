"""Random Twitter-v2-shaped envelopes: the parser returns a tweet or raises ``InvalidTweet``, nothing else.

Any other exception used to escape the dead-letter path and crash-loop the enrich agent (issue 19, finding 2).
"""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.parsing import InvalidTweet, parse_tweet

NOW = 1_700_000_000_000
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**13), st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)


def maybe(keys: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: st.one_of(v, json_values) for k, v in keys.items()})


users = st.lists(maybe({"id": st.text(max_size=3), "username": st.text(max_size=5),
                        "public_metrics": maybe({"followers_count": st.integers(-1, 10**6)})}), max_size=3)
data = maybe({"id": st.text(max_size=5), "text": st.text(max_size=20), "author_id": st.text(max_size=3),
              "created_at": st.just("2023-11-14T22:13:20Z"), "lang": st.text(max_size=3),
              "referenced_tweets": st.lists(maybe({"type": st.sampled_from(["retweeted", "quoted", "replied_to"]),
                                                   "id": st.text(max_size=3)}), max_size=2)})
envelopes = st.fixed_dictionaries({"data": data}, optional={
    "includes": st.one_of(maybe({"users": users}), json_values),
    "matching_rules": st.one_of(st.lists(maybe({"tag": st.text(max_size=5)}), max_size=2), json_values),
    "brand": st.one_of(st.text(max_size=5), json_values)})


@settings(max_examples=500, deadline=None)
@given(envelopes)
def test_random_v2_envelopes_never_raise_anything_but_invalid_tweet(envelope):
    try:
        tweet = parse_tweet(orjson.dumps(envelope), now_ms=NOW)
    except InvalidTweet:
        return
    assert isinstance(tweet["id"], str) and isinstance(tweet["text"], str)
    assert tweet["brand"] is None or isinstance(tweet["brand"], str)

"""Coverage-guided fuzzing of the input parser (not part of CI: run by hand).

    pip install atheris && python tests/fuzz/fuzz_parser.py -max_total_time=300

The property: ``parse_tweet`` either returns a tweet that satisfies the output invariants or raises
``InvalidTweet`` with a known code; any other exception is a bug.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from stream_app.parsing import InvalidTweet, parse_tweet

CODES = {"not_utf8", "invalid_json", "not_object", "missing_field", "invalid_field", "empty_text", "text_too_long",
         "timestamp_out_of_range"}


def one_input(data: bytes) -> None:
    try:
        tweet = parse_tweet(data, now_ms=1_795_000_000_000, fallback_ms=1_795_000_000_000)
    except InvalidTweet as exc:
        assert exc.code in CODES, exc.code
        return
    assert isinstance(tweet["id"], str) and tweet["id"]
    assert isinstance(tweet["text"], str) and tweet["text"].strip() and len(tweet["text"]) <= 4000
    assert isinstance(tweet["event_time_ms"], int)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()

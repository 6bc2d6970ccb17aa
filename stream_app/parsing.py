"""Input tweet parsing and validation: raw Kafka bytes -> normalized tweet dict.

Hand-written checks (not a generic validator per message) keep the hot path cheap; a test
checks they accept and reject exactly what ``schemas/tweet.schema.json`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

# Event times before Twitter existed or more than a day ahead are refused: they would
# open windows nobody looks at, or poison the baselines of the alert rules.
MIN_EVENT_MS = 1_142_899_200_000  # 2006-03-21
MAX_FUTURE_MS = 24 * 3600 * 1000
MAX_ID = 128
MAX_SHORT = 64
# Texts longer than max_text (BADBUZZ_MAX_TEXT) are scored on their first max_text characters and flagged
# "truncated"; only past this hard cap (64 Ki characters, a long blog post; at most 256 KiB of UTF-8, a
# quarter of Kafka's default 1 MB message) is a text refused: what is that long is not a post but a payload.
HARD_MAX_TEXT = 64 * 1024


class InvalidTweet(ValueError):
    """Raised with a machine-readable ``code`` for the dead-letter topic."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def parse_time(value: Any, *, now_ms: int | None = None) -> int:
    """``created_at`` as epoch ms, from ISO-8601 text, Twitter's legacy format or epoch ms."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidTweet("invalid_field", "created_at must be an ISO-8601 string or epoch milliseconds")
    if isinstance(value, int | float):
        ms = int(value)
    else:
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:  # Twitter API v1.1 / CSV exports: "Wed Feb 24 11:35:52 +0000 2015", "2015-02-24 11:35:52 -0800"
                dt = datetime.strptime(text, "%a %b %d %H:%M:%S %z %Y")
            except ValueError:
                try:
                    dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
                except ValueError:
                    raise InvalidTweet("invalid_field", f"created_at {text[:40]!r} is not a valid timestamp") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = int(dt.timestamp() * 1000)
    now = _now_ms() if now_ms is None else now_ms
    if ms < MIN_EVENT_MS or ms > now + MAX_FUTURE_MS:
        raise InvalidTweet("timestamp_out_of_range", f"created_at {ms} ms is before 2006 or more than a day ahead")
    return ms


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _opt_str(obj: dict[str, Any], key: str, limit: int = MAX_SHORT) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTweet("invalid_field", f"{key} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidTweet("invalid_field", f"{key} is longer than {limit} characters")
    return value


def _author(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidTweet("invalid_field", "author must be an object")
    followers = value.get("followers")
    if followers is not None and (isinstance(followers, bool) or not isinstance(followers, int) or followers < 0):
        raise InvalidTweet("invalid_field", "author.followers must be a non-negative integer")
    return {
        "id": _opt_str(value, "id", MAX_ID),
        "handle": _opt_str(value, "handle"),
        "followers": followers,
    }


def _v2_part(parent: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """An optional part of a v2 envelope, of the shape ``schemas/tweet.schema.json`` gives it, else refused."""
    value = parent.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind) or (kind is list and not all(isinstance(v, dict) for v in value)):
        shape = "an object" if kind is dict else "an array of objects"
        raise InvalidTweet("invalid_field", f"{where}{key} must be {shape}")
    return value


def _v2_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidTweet("invalid_field", f"{where}{key} must be a string")
    return value


def _from_v2(envelope: dict[str, Any]) -> dict[str, Any]:
    """Map a Twitter API v2 ``{"data": ..., "includes": ...}`` envelope onto our tweet fields.

    Every nested part is checked against the schema before use: ``"includes": [1]`` once raised
    AttributeError outside the dead-letter path and crash-looped the agent (tests/test_security.py).
    """
    data = envelope["data"]
    users = {u.get("id"): u for u in _v2_part(_v2_part(envelope, "includes", dict, ""), "users", list, "includes.")
             if isinstance(u.get("id"), str)}
    author_id = _v2_str(data, "author_id", "data.")
    user = users.get(author_id) or {}
    refs: dict[str, Any] = {}
    for r in _v2_part(data, "referenced_tweets", list, "data."):
        if r.get("type") not in (None, "retweeted", "quoted", "replied_to"):
            raise InvalidTweet("invalid_field", "data.referenced_tweets[].type must be retweeted, quoted or replied_to")
        refs[r.get("type")] = _v2_str(r, "id", "data.referenced_tweets[].")
    rules = _v2_part(envelope, "matching_rules", list, "")
    brand = _v2_str(envelope, "brand", "") or next((_v2_str(r, "tag", "matching_rules[].") for r in rules
                                                   if r.get("tag")), None)
    metrics = user.get("public_metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    author = None
    if author_id is not None or user:
        author = {"id": author_id, "handle": user.get("username"), "followers": metrics.get("followers_count")}
    return {
        "id": data.get("id"),
        "text": data.get("text"),
        "created_at": _v2_str(data, "created_at", "data."),
        "lang": _v2_str(data, "lang", "data."),
        "brand": brand,
        "author": author,
        "is_retweet": "retweeted" in refs,
        "retweet_of": refs.get("retweeted"),
        "in_reply_to": refs.get("replied_to"),
    }


def parse_tweet(raw: bytes | str, *, max_text: int = 4000, fallback_ms: int | None = None,
                now_ms: int | None = None) -> dict[str, Any]:
    """Validate one input message; raise ``InvalidTweet`` with a code and a clear message.

    ``fallback_ms`` (the Kafka record timestamp) is the event time when ``created_at`` is absent.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidTweet("not_utf8", f"message is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidTweet("invalid_json", f"message is not valid JSON: {exc}") from None
    return validate_tweet(obj, max_text=max_text, fallback_ms=fallback_ms, now_ms=now_ms)


def validate_tweet(obj: Any, *, max_text: int = 4000, fallback_ms: int | None = None,
                   now_ms: int | None = None) -> dict[str, Any]:
    """Validate one decoded message (a flat tweet or a v2 envelope); what ``parse_tweet`` does after JSON.

    Callers that already hold the decoded object (``POST /predict``) skip a dump and a reparse.
    """
    if not isinstance(obj, dict):
        raise InvalidTweet("not_object", f"message must be a JSON object, got {type(obj).__name__}")
    if isinstance(obj.get("data"), dict):
        obj = _from_v2(obj)

    tweet_id = obj.get("id")
    if not isinstance(tweet_id, str) or not tweet_id.strip():
        raise InvalidTweet("missing_field" if tweet_id is None else "invalid_field", "id must be a non-empty string")
    if len(tweet_id) > MAX_ID:
        raise InvalidTweet("invalid_field", f"id is longer than {MAX_ID} characters")
    text = obj.get("text")
    if text is None:
        raise InvalidTweet("missing_field", "text is required")
    if not isinstance(text, str):
        raise InvalidTweet("invalid_field", f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidTweet("empty_text", "text is empty")
    hard_cap = max(HARD_MAX_TEXT, max_text)
    if len(text) > hard_cap:
        raise InvalidTweet("text_too_long", f"text has {len(text)} characters, the hard limit is {hard_cap}")
    truncated = len(text) > max_text
    if truncated:
        text = text[:max_text]

    created = obj.get("created_at")
    if created is not None:
        event_ms = parse_time(created, now_ms=now_ms)
    else:
        event_ms = fallback_ms if fallback_ms is not None else (now_ms if now_ms is not None else _now_ms())
    brand = _opt_str(obj, "brand")
    is_retweet = obj.get("is_retweet", False)
    if not isinstance(is_retweet, bool):
        raise InvalidTweet("invalid_field", "is_retweet must be a boolean")
    return {
        "id": tweet_id,
        "text": text,
        "created_at": iso(event_ms),
        "event_time_ms": event_ms,
        "lang": _opt_str(obj, "lang", 16),
        "brand": brand.lstrip("@").lower() if brand else None,
        "author": _author(obj.get("author")),
        "is_retweet": is_retweet,
        "retweet_of": _opt_str(obj, "retweet_of", MAX_ID),
        "in_reply_to": _opt_str(obj, "in_reply_to", MAX_ID),
        "truncated": truncated,
    }

"""Tweet text normalization shared by training and serving.

The model is trained on TweetEval-style text (``@user`` for mentions, URLs removed),
so serving must apply exactly the same transform or accuracy silently drops.
"""

from __future__ import annotations

import html
import re

_MENTION = re.compile(r"(?<![\w@])@\w{1,30}")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_UESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_SPACES = re.compile(r"\s+")
_RETWEET = re.compile(r"(?:RT\s+@\w{1,30}:?\s+)+")  # disjoint pieces: linear time


def _unescape_u(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    # Lone surrogates cannot be encoded later; drop them rather than fail.
    return "" if 0xD800 <= ord(char) <= 0xDFFF else char


def normalize_for_model(text: str) -> str:
    """Return the text as the sentiment model saw it in training."""
    if "\\u" in text:
        text = _UESCAPE.sub(_unescape_u, text)
    if "&" in text:
        text = html.unescape(text)
    text = _URL.sub("http", text)
    text = _MENTION.sub("@user", text)
    return _SPACES.sub(" ", text).strip()


def retweeted_text(text: str) -> str:
    """The retweeted text without its ``RT @handle:`` markers (possibly chained).

    A retweet says what the original said: the model scores the original's words, so the text cache
    gives every retweet of a storm the probabilities of its first copy instead of a new model run.
    """
    m = _RETWEET.match(text, len(text) - len(text.lstrip()))
    return text[m.end():] if m and m.end() < len(text) else text


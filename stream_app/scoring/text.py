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

"""Text normalization, tokenization and cheap language detection for the rule engine.

Everything here is linear in the length of the text: a handful of single-pass regex
substitutions (no nested quantifiers) and one pass over the tokens.
"""

from __future__ import annotations

import re
import unicodedata

#: Texts longer than this (after normalization) are truncated before matching. Tweets are
#: at most 280 characters; the cap only bounds the cost of adversarial input.
MAX_CHARS = 4000

_URL = re.compile(r"(?:https?://|www\.)\S{0,2000}", re.IGNORECASE)
_UESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_APOS = re.compile(r"[\u2018\u2019\u02bc\u0060\u00b4]")
_NT = re.compile(r"n't\b")
_CONTRACTIONS = {
    "can't": "can not", "won't": "will not", "cant": "can not", "wont": "will not", "dont": "do not",
    "didnt": "did not", "doesnt": "does not", "isnt": "is not", "wasnt": "was not", "arent": "are not",
    "werent": "were not", "havent": "have not", "hasnt": "has not", "hadnt": "had not", "couldnt": "could not",
    "wouldnt": "would not", "shouldnt": "should not", "aint": "is not",
}
_CONTR = re.compile(r"\b(?:can't|won't|cant|wont|dont|didnt|doesnt|isnt|wasnt|arent|werent|havent|hasnt|hadnt|"
                    r"couldnt|wouldnt|shouldnt|aint)\b")
_RUN3 = re.compile(r"(.)\1\1+")  # one char + backreference: linear, no nested quantifier
_RUN2 = re.compile(r"(.)\1+")
_TOKEN = re.compile(r"[#@]?[^\W_]{1,100}")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_ASCII_UPPER = re.compile(r"[A-Z]")

EN_STOP = frozenset(
    "the and is are was were to of my i you your it this that for on in with not have has be but just "
    "we they what why when been can will would get got me so at an do does did no".split()
)
FR_STOP = frozenset(
    "le la les et est des un une du de pour pas je vous mon ma mes que qui sur avec ce cette ca il elle "
    "on nous est sont suis ai avez au aux en par plus depuis toujours rien merci bonjour".split()
)


def _unescape_u(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return "" if 0xD800 <= ord(char) <= 0xDFFF else char


def strip_accents(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def normalize(text: str) -> str:
    """Lowercase, strip accents, drop URLs, unify apostrophes, expand ``n't``, collapse runs of 3+ chars to 2.

    ``"Sooooo BAD"`` -> ``"soo bad"``; ``"rééémbourser"`` -> ``"reembourser"`` (the engine also
    tries the fully squeezed form ``"rembourser"`` for tokens that were elongated).
    """
    return collapse(normalize_raw(text))


def has_run(text: str) -> bool:
    """True when ``text`` holds a run of 3 or more identical characters."""
    return _RUN3.search(text) is not None


def collapse(text: str) -> str:
    """Collapse runs of 3 or more identical characters to 2."""
    return _RUN3.sub(r"\1\1", text)


def normalize_raw(text: str) -> str:
    """:func:`normalize` without the run collapsing (the engine needs to know which words were elongated)."""
    if len(text) > MAX_CHARS * 2:
        text = text[: MAX_CHARS * 2]
    if "\\u" in text:
        text = _UESCAPE.sub(_unescape_u, text)
    if "&" in text:
        text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    text = _URL.sub(" ", text)
    text = strip_accents(text).lower()
    text = _APOS.sub("'", text)
    text = _CONTR.sub(lambda m: _CONTRACTIONS[m.group(0)], text)
    text = _NT.sub(" not", text)
    return text[:MAX_CHARS]


def squeeze(token: str) -> str:
    """Collapse every run of a repeated character to one char (``"reembourser"`` -> ``"rembourser"``)."""
    return _RUN2.sub(r"\1", token)


def tokenize(norm: str) -> list[str]:
    """Word tokens of a normalized text; hashtags keep ``#``, mentions keep ``@``; apostrophes split words."""
    return _TOKEN.findall(norm)


def detect_lang(tokens: list[str]) -> str:
    """``"fr"`` when French stop words outnumber English ones, else ``"en"``."""
    en = fr = 0
    for tok in tokens:
        if tok in EN_STOP:
            en += 1
        if tok in FR_STOP:
            fr += 1
    return "fr" if fr > en else "en"


def caps_ratio(text: str) -> tuple[float, int]:
    """Share of upper-case letters among letters, and the number of letters (raw text, mentions/URLs kept)."""
    text = text[:MAX_CHARS]
    if text.isascii():
        total = len(_ASCII_LETTER.findall(text))
        return (len(_ASCII_UPPER.findall(text)) / total if total else 0.0), total
    upper = total = 0
    for ch in text:
        if ch.isalpha():
            total += 1
            if ch.isupper():
                upper += 1
    return (upper / total if total else 0.0), total

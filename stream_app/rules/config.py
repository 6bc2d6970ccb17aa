"""Loading and validation of the TOML rule tables (data, not code).

Every problem raises :class:`RuleConfigError` with one line naming the file and the field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # Python 3.11+: private but stable module names
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants as _sre_c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

from ..kpi import GENERAL_TOPIC, NO_INCIDENT
from .normalize import normalize, strip_accents, tokenize

DEFAULT_DIR = Path(__file__).resolve().parent / "tables"
LANGS = ("en", "fr")
KINDS = ("topic", "claim", "intensity", "threat")
ID_RE = re.compile(r"^[a-z0-9_][a-z0-9_.\-]{0,80}$")
MAX_QUANT = 30          # largest allowed upper bound of a regex quantifier
MAX_REGEX_WIDTH = 1000  # product of (max-min+1) over quantifiers: bounds backtracking per start position


class RuleConfigError(ValueError):
    """A rule table is invalid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    label: str
    kind: str
    topic: str | None
    weight: float
    claim: float
    keywords: tuple[str, ...]
    phrases: tuple[str, ...]
    hashtags: tuple[str, ...]
    emoji: tuple[str, ...]
    regex: tuple[str, ...]
    negatable: bool
    negations: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Table:
    path: str
    lang: str
    pack: str
    incidents: tuple[str, ...]
    fallback_incident: str | None
    negations: tuple[str, ...]
    negation_window: int
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Meta:
    version: str
    claim_threshold: float = 1.0
    #: per language: (threshold, claim score per unit of P(negative), per unit of P(positive)); the
    #: default for a language without its own ``[claim.<lang>]`` is (claim_threshold, 0, 0)
    claim_by_lang: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    urgency: dict[str, float] = field(default_factory=dict)
    reach_tiers: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    model_weight: float = 0.5
    evidence_rate: float = 0.7


URGENCY_KEYS = {
    "medium": 2.0,              # score >= medium -> "medium"
    "critical": 4.0,            # score >= critical -> "critical"
    "negative_sentiment": 1.5,  # times P(negative) (or 1 if only the label is given)
    "positive_sentiment": -1.0,  # times P(positive)
    "claim": 1.0,               # is_claim
    "incident": 0.5,            # an incident was found
    "caps": 1.0,                # shouting: >= 60 % capitals over >= 8 letters
    "exclamations": 0.5,        # "!!" or more
    "intensity": 1.0,           # an intensity rule fired (swear words...)
    "threat": 2.0,              # a threat rule fired (lawyer, never again, avocat...)
    "reach": 1.0,               # per reach tier reached by the author's followers
}


def _err(path: Path | str, where: str, msg: str) -> RuleConfigError:
    return RuleConfigError(f"{path}: {where}: {msg}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise _err(path, "syntax", str(exc)) from None
    except OSError as exc:
        raise _err(path, "file", exc.strerror or str(exc)) from None


def _check_keys(path: Path, where: str, data: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    for key in data:
        if key not in allowed:
            allowed_list = ", ".join(sorted(allowed))
            raise _err(path, f"{where}.{key}" if where else key, f"unknown field (allowed: {allowed_list})")
    for key in sorted(required):
        if key not in data:
            raise _err(path, f"{where}.{key}" if where else key, "missing required field")


def _typed(path: Path, where: str, value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if isinstance(value, bool) and kind is not bool and (kind is int or kind == (int, float)):
        raise _err(path, where, f"expected {name}, got bool")
    if not isinstance(value, kind):
        raise _err(path, where, f"expected {name}, got {type(value).__name__}")
    return value


def _str_list(path: Path, where: str, value: Any) -> tuple[str, ...]:
    _typed(path, where, value, list, "a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _err(path, f"{where}[{i}]", "expected a non-empty string")
    return tuple(value)


def check_regex(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` and reject constructs that can backtrack catastrophically.

    Rejected: unbounded quantifiers (``*``, ``+``, ``{n,}``), bounds above 30, a quantifier or an
    alternation inside a repeated group (``(a+)+``, ``(a|ab){1,9}``), back-references, and patterns whose
    quantifier widths multiply past 1000 (``\\w{0,30}\\w{0,30}\\w{0,30}``). Raises ``ValueError``.
    """
    try:
        compiled = re.compile(pattern)
        tree = _sre_parse.parse(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    width = [1]
    repeats = {_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT}
    if hasattr(_sre_c, "POSSESSIVE_REPEAT"):
        repeats.add(_sre_c.POSSESSIVE_REPEAT)

    def walk(items: Any, in_repeat: bool) -> None:
        for op, av in items:
            if op in repeats:
                lo, hi, sub = av
                if hi == _sre_c.MAXREPEAT:
                    raise ValueError(f"unbounded quantifier in {pattern!r}: use {{m,n}} with n <= {MAX_QUANT}")
                if hi > MAX_QUANT:
                    raise ValueError(f"quantifier bound {hi} > {MAX_QUANT} in {pattern!r}")
                if in_repeat and hi > 1:
                    raise ValueError(f"nested quantifier in {pattern!r} (catastrophic backtracking risk)")
                width[0] *= hi - lo + 1
                walk(sub, in_repeat or hi > 1)
            elif op == _sre_c.SUBPATTERN:
                walk(av[-1], in_repeat)
            elif op == _sre_c.BRANCH:
                if in_repeat:
                    raise ValueError(f"alternation inside a repeated group in {pattern!r} (backtracking risk)")
                for branch in av[1]:
                    walk(branch, in_repeat)
            elif op in (_sre_c.ASSERT, _sre_c.ASSERT_NOT):
                walk(av[1], in_repeat)
            elif op in (_sre_c.GROUPREF, _sre_c.GROUPREF_EXISTS):
                raise ValueError(f"back-reference not allowed in {pattern!r}")
            elif hasattr(_sre_c, "ATOMIC_GROUP") and op == _sre_c.ATOMIC_GROUP:
                walk(av, in_repeat)

    walk(tree, False)
    if width[0] > MAX_REGEX_WIDTH:
        raise ValueError(f"regex {pattern!r} too ambiguous (quantifier width {width[0]} > {MAX_REGEX_WIDTH})")
    return compiled


RULE_FIELDS = {
    "id", "label", "kind", "topic", "weight", "claim", "keywords", "phrases", "hashtags", "emoji", "regex",
    "negatable", "negations", "note",
}
TABLE_FIELDS = {"lang", "pack", "description", "incidents", "fallback_incident", "negations", "negation_window", "rule"}
#: a ``<pack>.<part>.toml`` file (e.g. generated cues) only adds rules to its pack
PART_FIELDS = {"lang", "pack", "description", "rule"}


def _norm_term(term: str) -> str:
    """Normalize a literal pattern the same way texts are (keeps a trailing ``*`` prefix marker)."""
    star = term.endswith("*")
    core = normalize(term[:-1] if star else term).strip()
    core = " ".join(core.split())
    return core + ("*" if star else "")


def parse_rule(path: Path, where: str, raw: Any, lang: str) -> Rule:
    _typed(path, where, raw, dict, "a table")
    _check_keys(path, where, raw, RULE_FIELDS, {"id", "label", "kind"})
    rid = _typed(path, f"{where}.id", raw["id"], str, "a string")
    if not ID_RE.match(rid):
        raise _err(path, f"{where}.id", f"bad rule id {rid!r} (lowercase letters, digits, . _ -)")
    where = f"rule[{rid}]"
    label = _typed(path, f"{where}.label", raw["label"], str, "a string")
    kind = _typed(path, f"{where}.kind", raw["kind"], str, "a string")
    if kind not in KINDS:
        raise _err(path, f"{where}.kind", f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    topic = raw.get("topic")
    if kind == "topic":
        if topic is None:
            raise _err(path, f"{where}.topic", "missing required field for kind = 'topic'")
        _typed(path, f"{where}.topic", topic, str, "a string")
        if not ID_RE.match(topic):
            raise _err(path, f"{where}.topic", f"bad topic id {topic!r}")
        if topic in (GENERAL_TOPIC, NO_INCIDENT):  # the enriched event's "no topic" / "no incident" values
            raise _err(path, f"{where}.topic", f"{topic!r} is reserved (stream_app/kpi.py)")
    elif topic is not None:
        raise _err(path, f"{where}.topic", "only allowed for kind = 'topic'")
    weight = float(_typed(path, f"{where}.weight", raw.get("weight", 1.0), (int, float), "a number"))
    claim_default = weight if kind in ("claim", "threat") else 0.0
    claim = float(_typed(path, f"{where}.claim", raw.get("claim", claim_default), (int, float), "a number"))
    if kind == "claim" and "claim" in raw:
        raise _err(path, f"{where}.claim", "use weight for kind = 'claim'")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("keywords", "phrases", "hashtags", "emoji", "regex"):
        lists[key] = _str_list(path, f"{where}.{key}", raw.get(key, []))
    if not any(lists.values()):
        raise _err(path, where, "rule has no patterns (keywords, phrases, hashtags, emoji or regex)")
    keywords = []
    for i, kw in enumerate(lists["keywords"]):
        term = _norm_term(kw)
        if tokenize(term.rstrip("*")) != [term.rstrip("*")] or "*" in term.rstrip("*"):
            raise _err(path, f"{where}.keywords[{i}]", f"{kw!r} must be one word (optional trailing *)")
        keywords.append(term)
    phrases = []
    for i, ph in enumerate(lists["phrases"]):
        term = _norm_term(ph)
        words = term.split()
        if len(words) < 2:
            raise _err(path, f"{where}.phrases[{i}]", f"{ph!r} must have 2 or more words (use keywords)")
        if any(tokenize(w.rstrip("*")) != [w.rstrip("*")] for w in words):
            raise _err(path, f"{where}.phrases[{i}]", f"{ph!r}: each word must be a single token (letters/digits)")
        if words[0].endswith("*") or any("*" in w[:-1] for w in words):
            raise _err(path, f"{where}.phrases[{i}]", f"{ph!r}: '*' only at the end of a non-first word")
        phrases.append(" ".join(words))
    hashtags = []
    for i, tag in enumerate(lists["hashtags"]):
        term = strip_accents(tag).lower().lstrip("#")
        if not term or not re.fullmatch(r"[^\W_]{1,100}", term):
            raise _err(path, f"{where}.hashtags[{i}]", f"bad hashtag {tag!r}")
        hashtags.append("#" + term)
    regexes = []
    for i, pattern in enumerate(lists["regex"]):
        try:
            check_regex(pattern)
        except ValueError as exc:
            raise _err(path, f"{where}.regex[{i}]", str(exc)) from None
        regexes.append(pattern)
    negatable = _typed(path, f"{where}.negatable", raw.get("negatable", False), bool, "a boolean")
    negations = raw.get("negations")
    if negations is not None:
        negations = tuple(_norm_term(n) for n in _str_list(path, f"{where}.negations", negations))
    if "note" in raw:
        _typed(path, f"{where}.note", raw["note"], str, "a string")
    return Rule(
        id=rid, label=label, kind=kind, topic=topic, weight=weight, claim=claim,
        keywords=tuple(keywords), phrases=tuple(phrases), hashtags=tuple(hashtags),
        emoji=lists["emoji"], regex=tuple(regexes), negatable=negatable, negations=negations,
    )


def parse_table(path: Path) -> Table:
    data = _read_toml(path)
    part = "." in path.stem
    _check_keys(path, "", data, PART_FIELDS if part else TABLE_FIELDS, {"lang", "pack", "rule"})
    lang = _typed(path, "lang", data["lang"], str, "a string")
    if lang not in LANGS:
        raise _err(path, "lang", f"unknown language {lang!r} (one of {', '.join(LANGS)})")
    if lang != path.parent.name:
        raise _err(path, "lang", f"{lang!r} does not match folder {path.parent.name!r}")
    pack = _typed(path, "pack", data["pack"], str, "a string")
    if pack != path.stem.split(".")[0]:
        raise _err(path, "pack", f"{pack!r} does not match file name {path.name!r}")
    if "description" in data:
        _typed(path, "description", data["description"], str, "a string")
    incidents = _str_list(path, "incidents", data.get("incidents", []))
    fallback = data.get("fallback_incident")
    if fallback is not None:
        _typed(path, "fallback_incident", fallback, str, "a string")
        if fallback not in incidents:
            raise _err(path, "fallback_incident", f"{fallback!r} is not in incidents")
    negations = tuple(_norm_term(n) for n in _str_list(path, "negations", data.get("negations", [])))
    window = _typed(path, "negation_window", data.get("negation_window", 3), int, "an integer")
    if not 1 <= window <= 10:
        raise _err(path, "negation_window", "must be between 1 and 10")
    raw_rules = _typed(path, "rule", data["rule"], list, "an array of [[rule]] tables")
    rules = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rule = parse_rule(path, f"rule[{i}]", raw, lang)
        if rule.id in seen:
            raise _err(path, f"rule[{rule.id}].id", "duplicate rule id")
        seen.add(rule.id)
        rules.append(rule)
    return Table(str(path), lang, pack, incidents, fallback, negations, window, tuple(rules))


def parse_meta(path: Path) -> Meta:
    data = _read_toml(path)
    _check_keys(path, "", data, {"version", "description", "claim", "urgency", "confidence"}, {"version"})
    version = _typed(path, "version", data["version"], str, "a string")
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.\-+]{0,40}", version):
        raise _err(path, "version", f"bad version {version!r}")
    claim = _typed(path, "claim", data.get("claim", {}), dict, "a table")
    _check_keys(path, "claim", claim, {"threshold", *LANGS}, set())
    threshold = float(_typed(path, "claim.threshold", claim.get("threshold", 1.0), (int, float), "a number"))
    by_lang: dict[str, tuple[float, float, float]] = {}
    for lang in LANGS:
        if lang not in claim:
            continue
        sub = _typed(path, f"claim.{lang}", claim[lang], dict, "a table")
        _check_keys(path, f"claim.{lang}", sub, {"threshold", "negative_sentiment", "positive_sentiment"},
                    {"threshold"})
        by_lang[lang] = tuple(  # type: ignore[assignment]
            float(_typed(path, f"claim.{lang}.{k}", sub.get(k, 0.0), (int, float), "a number"))
            for k in ("threshold", "negative_sentiment", "positive_sentiment"))
    urg = _typed(path, "urgency", data.get("urgency", {}), dict, "a table")
    _check_keys(path, "urgency", urg, set(URGENCY_KEYS) | {"reach_tiers"}, set())
    urgency = dict(URGENCY_KEYS)
    for key, value in urg.items():
        if key != "reach_tiers":
            urgency[key] = float(_typed(path, f"urgency.{key}", value, (int, float), "a number"))
    tiers = urg.get("reach_tiers", [10_000, 100_000, 1_000_000])
    _typed(path, "urgency.reach_tiers", tiers, list, "a list of integers")
    for i, t in enumerate(tiers):
        _typed(path, f"urgency.reach_tiers[{i}]", t, int, "an integer")
    if urgency["medium"] > urgency["critical"]:
        raise _err(path, "urgency.medium", "must not exceed urgency.critical")
    conf = _typed(path, "confidence", data.get("confidence", {}), dict, "a table")
    _check_keys(path, "confidence", conf, {"model_weight", "evidence_rate"}, set())
    mw = float(_typed(path, "confidence.model_weight", conf.get("model_weight", 0.5), (int, float), "a number"))
    if not 0.0 <= mw <= 1.0:
        raise _err(path, "confidence.model_weight", "must be in [0, 1]")
    rate = float(_typed(path, "confidence.evidence_rate", conf.get("evidence_rate", 0.7), (int, float), "a number"))
    if rate <= 0:
        raise _err(path, "confidence.evidence_rate", "must be > 0")
    return Meta(version, threshold, by_lang, urgency, tuple(sorted(tiers)), mw, rate)


def parse_brands(path: Path) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    data = _read_toml(path)
    _check_keys(path, "", data, {"default", "brands", "description"}, {"brands"})
    default = _str_list(path, "default", data.get("default", ["generic"]))
    brands = _typed(path, "brands", data["brands"], dict, "a table")
    out: dict[str, tuple[str, ...]] = {}
    for handle, packs in brands.items():
        out[handle.lower().lstrip("@")] = _str_list(path, f"brands.{handle}", packs)
    return default, out

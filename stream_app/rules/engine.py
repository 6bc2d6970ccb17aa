"""Rule engine: claims, urgency, topics and incidents from editable TOML tables.

Tables are compiled once by :meth:`RuleEngine.load`. Matching is linear in the tweet length:
one tokenization pass, then hash look-ups per token (exact words, hashtags, word prefixes by
length, phrases indexed by their first word), substring checks for emoji and a few regexes that
were vetted by :func:`~stream_app.rules.config.check_regex` (bounded, no nested quantifiers).

Confidence (documented in README.md)::

    p        = sentiment_probs[sentiment_label]   (0.5 when no probabilities are given)
    M        = |claim_score - threshold| + incident_score   (threshold of [claim.<lang>] or [claim])
    evidence = 1 - exp(-evidence_rate * M)
    confidence = model_weight * p + (1 - model_weight) * evidence      # in [0, 1]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .config import (
    DEFAULT_DIR,
    LANGS,
    Meta,
    Rule,
    RuleConfigError,
    Table,
    parse_brands,
    parse_meta,
    parse_table,
)
from .normalize import caps_ratio, collapse, detect_lang, has_run, normalize_raw, squeeze, tokenize

__all__ = ["RuleEngine", "RuleResult", "RuleConfigError"]

URGENCY_LEVELS = ("low", "medium", "critical")
_MENTION_OR_URL = re.compile(r"(?:@\w{1,50}|https?://\S{0,500}|#\w{1,100})")


@dataclass(frozen=True, slots=True)
class RuleResult:
    is_claim: bool
    urgency: str  # "low" | "medium" | "critical"
    topics: tuple[str, ...]  # topic ids, strongest first
    incident: str | None  # one incident type id or None
    confidence: float  # [0, 1], see module docstring
    lang: str  # "en" | "fr"
    matched: tuple[str, ...]  # ids of the rules that fired


class _Matcher:
    """All rules of some tables compiled into look-up structures."""

    __slots__ = (
        "rules", "exact", "squeezed", "prefix", "prefix_lens", "phrases", "emoji", "regexes",
        "neg_sets", "windows",
    )

    def __init__(self, tables: Iterable[Table]) -> None:
        self.rules: list[Rule] = []
        self.exact: dict[str, list[int]] = {}
        self.squeezed: dict[str, list[int]] = {}
        self.prefix: dict[str, list[int]] = {}
        self.phrases: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        self.emoji: list[tuple[str, int]] = []
        self.regexes: list[tuple[re.Pattern[str], int]] = []
        self.neg_sets: list[frozenset[str]] = []
        self.windows: list[int] = []
        for table in tables:
            for rule in table.rules:
                idx = len(self.rules)
                self.rules.append(rule)
                cues = rule.negations if rule.negations is not None else table.negations
                self.neg_sets.append(frozenset(cues) if rule.negatable else frozenset())
                self.windows.append(table.negation_window)
                for kw in rule.keywords:
                    if kw.endswith("*"):
                        self.prefix.setdefault(kw[:-1], []).append(idx)
                    else:
                        self.exact.setdefault(kw, []).append(idx)
                        self.squeezed.setdefault(squeeze(kw), []).append(idx)
                for tag in rule.hashtags:
                    self.exact.setdefault(tag, []).append(idx)
                for ph in rule.phrases:
                    words = ph.split()
                    self.phrases.setdefault(words[0], []).append((idx, tuple(words[1:])))
                for em in rule.emoji:
                    self.emoji.append((em, idx))
                for pattern in rule.regex:
                    self.regexes.append((re.compile(pattern), idx))
        self.prefix_lens = sorted({len(p) for p in self.prefix}, reverse=True)

    def _negated(self, idx: int, tokens: list[str], pos: int) -> bool:
        cues = self.neg_sets[idx]
        if not cues:
            return False
        for tok in tokens[max(0, pos - self.windows[idx]) : pos]:
            if tok in cues:
                return True
        return False

    def match(self, norm: str, tokens: list[str], elongated: set[int]) -> set[int]:
        fired: set[int] = set()
        negated: set[int] = set()

        def hit(ids: list[int], pos: int) -> None:
            for idx in ids:
                if idx in fired:
                    continue
                if self._negated(idx, tokens, pos):
                    negated.add(idx)
                else:
                    fired.add(idx)

        exact, prefix, lens, phrases = self.exact, self.prefix, self.prefix_lens, self.phrases
        for pos, tok in enumerate(tokens):
            words: tuple[str, ...] = (tok, tok[1:]) if tok[0] == "#" else (tok,)
            if pos in elongated:  # "reembourser" (from "rééémbourser") also tried as "rembourser"
                words = words + tuple(squeeze(w) for w in words)
                for word in words:
                    ids = self.squeezed.get(squeeze(word))
                    if ids:
                        hit(ids, pos)
            for word in words:
                ids = exact.get(word)
                if ids:
                    hit(ids, pos)
                n = len(word)
                for length in lens:
                    if length <= n:
                        ids = prefix.get(word[:length])
                        if ids:
                            hit(ids, pos)
                cands = phrases.get(word)
                if cands:
                    for idx, rest in cands:
                        if idx in fired or pos + len(rest) >= len(tokens):
                            continue
                        ok = True
                        for k, want in enumerate(rest, start=1):
                            got = tokens[pos + k]
                            if want[-1] == "*":
                                if not got.startswith(want[:-1]):
                                    ok = False
                                    break
                            elif got != want:
                                ok = False
                                break
                        if ok:
                            hit([idx], pos)
        for em, idx in self.emoji:
            if idx not in fired and em in norm:
                fired.add(idx)
        for rx, idx in self.regexes:
            if idx in fired:
                continue
            m = rx.search(norm)
            if m is None:
                continue
            before = tokenize(norm[max(0, m.start() - 60) : m.start()])
            if self.neg_sets[idx] and any(t in self.neg_sets[idx] for t in before[-self.windows[idx] :]):
                negated.add(idx)
            else:
                fired.add(idx)
        return fired


class RuleEngine:
    """Compiled rule tables. Build with :meth:`load`; :meth:`evaluate` is thread-safe and pure."""

    def __init__(self, meta: Meta, tables: dict[tuple[str, str], Table], default_packs: tuple[str, ...],
                 brands: dict[str, tuple[str, ...]], rules_dir: Path) -> None:
        self.version: str = meta.version
        self.meta = meta
        self.rules_dir = rules_dir
        self.tables = tables
        self.default_packs = default_packs
        self.brands = brands
        self.packs = tuple(sorted({pack for _, pack in tables}))
        self._matchers: dict[tuple[str, tuple[str, ...]], _Matcher] = {}
        self._incidents: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        self._fallback: dict[tuple[str, tuple[str, ...]], str | None] = {}
        for lang in LANGS:
            for pack in self.packs:
                self._compile(lang, self._with_generic((pack,)))

    @classmethod
    def load(cls, rules_dir: str | Path | None = None) -> RuleEngine:
        """Load, validate and compile ``rules_dir`` (default: the shipped ``stream_app/rules/tables``)."""
        root = Path(rules_dir) if rules_dir is not None else DEFAULT_DIR
        if not root.is_dir():
            raise RuleConfigError(f"{root}: rules directory not found")
        meta = parse_meta(root / "meta.toml")
        default, brands = parse_brands(root / "brands.toml")
        tables: dict[tuple[str, str], Table] = {}
        for lang in LANGS:
            folder = root / lang
            if not folder.is_dir():
                raise RuleConfigError(f"{folder}: missing language folder")
            # whole tables first, then the ``<pack>.<part>.toml`` files that add rules to them
            for path in sorted(folder.glob("*.toml"), key=lambda p: ("." in p.stem, p.name)):
                table = parse_table(path)
                if "." not in path.stem:
                    tables[(lang, table.pack)] = table
                elif (lang, table.pack) in tables:
                    main = tables[(lang, table.pack)]
                    tables[(lang, table.pack)] = replace(main, rules=main.rules + table.rules)
                else:
                    raise RuleConfigError(f"{path}: pack: no {table.pack}.toml to add these rules to")
            if (lang, "generic") not in tables:
                raise RuleConfigError(f"{folder / 'generic.toml'}: missing generic table")
        packs = {pack for _, pack in tables}
        for where, names in [("default", default), *((f"brands.{b}", p) for b, p in brands.items())]:
            for name in names:
                if name not in packs:
                    raise RuleConfigError(f"{root / 'brands.toml'}: {where}: unknown pack {name!r}")
        ids: dict[str, str] = {}
        for table in tables.values():
            for rule in table.rules:
                if rule.id in ids:
                    raise RuleConfigError(f"{table.path}: rule[{rule.id}].id: also defined in {ids[rule.id]}")
                ids[rule.id] = table.path
        return cls(meta, tables, default, brands, root)

    @staticmethod
    def _with_generic(packs: Iterable[str]) -> tuple[str, ...]:
        out = ["generic"]
        out.extend(p for p in packs if p != "generic")
        return tuple(dict.fromkeys(out))

    def _compile(self, lang: str, packs: tuple[str, ...]) -> _Matcher:
        key = (lang, packs)
        matcher = self._matchers.get(key)
        if matcher is None:
            tables = [self.tables[(lang, p)] for p in packs if (lang, p) in self.tables]
            matcher = _Matcher(tables)
            incidents: list[str] = []
            fallback = None
            for t in tables:
                incidents.extend(i for i in t.incidents if i not in incidents)
                fallback = t.fallback_incident or fallback
            self._matchers[key] = matcher
            self._incidents[key] = tuple(incidents)
            self._fallback[key] = fallback
        return matcher

    def packs_for(self, brand: str | None) -> tuple[str, ...]:
        """Domain packs for a brand handle (``"@United"`` -> ``("generic", "airline")``); unknown -> generic."""
        if not brand:
            return self._with_generic(self.default_packs)
        packs = self.brands.get(brand.lower().lstrip("@"))
        return self._with_generic(packs if packs is not None else self.default_packs)

    def evaluate(self, text: str, *, lang: str | None = None, brand: str | None = None,
                 sentiment_label: str | None = None, sentiment_probs: Mapping[str, float] | None = None,
                 followers: int | None = None, pack: str | None = None) -> RuleResult:
        """Apply the rules to one tweet. ``pack`` (e.g. ``"airline"``) overrides the brand look-up."""
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        raw = normalize_raw(text)
        tokens = tokenize(raw)
        elongated: set[int] = set()
        if has_run(raw):
            norm = collapse(raw)
            for i, tok in enumerate(tokens):
                short = collapse(tok)
                if short != tok:
                    tokens[i] = short
                    elongated.add(i)
        else:
            norm = raw
        if lang:
            lang = lang.lower()[:2]
        if lang not in LANGS:
            lang = detect_lang(tokens)
        packs = self._with_generic((pack,)) if pack else self.packs_for(brand)
        packs = tuple(p for p in packs if (lang, p) in self.tables) or ("generic",)
        matcher = self._compile(lang, packs)
        incident_ids = self._incidents[(lang, packs)]

        fired = matcher.match(norm, tokens, elongated)

        meta = self.meta
        probs = sentiment_probs or {}
        p_neg = _prob(probs, "negative", 1.0 if sentiment_label == "negative" else 0.0)
        p_pos = _prob(probs, "positive", 1.0 if sentiment_label == "positive" else 0.0)
        threshold, w_neg, w_pos = meta.claim_by_lang.get(lang, (meta.claim_threshold, 0.0, 0.0))
        claim_score = w_neg * p_neg + w_pos * p_pos
        topic_scores: dict[str, float] = {}
        intensity = threat = False
        matched: list[str] = []
        for idx in sorted(fired):
            rule = matcher.rules[idx]
            matched.append(rule.id)
            claim_score += rule.claim
            if rule.kind == "topic":
                topic_scores[rule.topic] = topic_scores.get(rule.topic, 0.0) + rule.weight  # type: ignore[index]
            elif rule.kind == "intensity":
                intensity = True
            elif rule.kind == "threat":
                threat = True
        is_claim = claim_score >= threshold

        order = {t: i for i, t in enumerate(incident_ids)}
        topics = tuple(
            t for t, s in sorted(topic_scores.items(), key=lambda kv: (-kv[1], order.get(kv[0], 99), kv[0])) if s > 0
        )
        incident = None
        incident_score = 0.0
        # Only a complaint carries an incident: a neutral meme about the fleet is not an in-flight incident.
        if sentiment_label in (None, "negative") or is_claim:
            for t in topics:
                if t in order:
                    incident, incident_score = t, topic_scores[t]
                    break
            if incident is None and (is_claim or sentiment_label == "negative"):
                incident = self._fallback[(lang, packs)]  # e.g. a complaint to an airline -> customer_service

        # urgency
        u = meta.urgency
        score = u["negative_sentiment"] * p_neg + u["positive_sentiment"] * p_pos
        if is_claim:
            score += u["claim"]
        if incident:
            score += u["incident"]
        ratio, letters = caps_ratio(_MENTION_OR_URL.sub(" ", text[:8000]))
        if letters >= 8 and ratio >= 0.6:
            score += u["caps"]
        if "!!" in text or "!!" in norm.replace(" ", ""):
            score += u["exclamations"]
        if intensity:
            score += u["intensity"]
        if threat:
            score += u["threat"]
        if followers:
            score += u["reach"] * sum(1 for tier in meta.reach_tiers if followers >= tier)
        urgency = "critical" if score >= u["critical"] else "medium" if score >= u["medium"] else "low"

        # confidence (see module docstring / README)
        p_model = _prob(probs, sentiment_label, 0.5) if probs else 0.5
        margin = abs(claim_score - threshold) + max(incident_score, 0.0)
        evidence = 1.0 - math.exp(-meta.evidence_rate * margin)
        confidence = meta.model_weight * p_model + (1.0 - meta.model_weight) * evidence
        confidence = min(1.0, max(0.0, confidence))
        return RuleResult(is_claim, urgency, topics, incident, round(confidence, 4), lang, tuple(matched))


def _prob(probs: Mapping[str, float], key: str, default: float) -> float:
    try:
        value = float(probs.get(key, default))
    except (TypeError, ValueError):
        return default
    if math.isnan(value):
        return default
    return min(1.0, max(0.0, value))

"""Operational and model-health rules: the worker watching itself (the seed projects' alert matrix).

Signals per minute of the worker's clock (passed in by the runtime edge, :mod:`.agents`): tweets read, dead
letters, end-to-end and ``/predict`` latencies (a log-spaced histogram: P95 without keeping samples), the
labels predicted, words outside the model's vocabulary, the input lag. Rules (``[health.<rule>]`` in the
alert rules, each naming its team) judge trailing windows of complete minutes:

- ``latency`` / ``predict_latency``: the P95 in ms of each minute, held for the tier's whole window (the
  seeds' "P95 > 200 ms for 10 min"): the value is the lowest minute's P95, so a burst of one minute (a
  backlog read after a restart) does not page, a slow half hour does;
- ``error_rate``: dead letters / tweets read; ``error_burst``: dead letters in a few minutes;
- ``prediction_mix``: the largest share of one label (subject = the label), with a minimum volume;
- ``vocabulary``: share of words the model's vocabulary lacks (a language or jargon it was not built for);
- ``consumer_lag``: growth of the input lag over the window, counted only when it never went down.

Alerts keep the engine's lifecycle (:func:`.rules.lifecycle`): one per rule and subject while it lasts.
Everything is per worker and in memory: a restart starts the windows afresh (Prometheus holds the
cluster-wide equivalents, deploy/prometheus/alert-rules.yml).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._schema import Field, check_table, fail, non_negative, one_of, positive, subtables
from .rules import SEVERITIES, TEAMS, Candidate, lifecycle
from .windows import iso

BRAND = "*"  # health alerts are about the worker, not a brand
LATENCY_EDGES_MS = tuple(round(1.1**i, 3) for i in range(130))  # 1 ms .. ~240 s, 10% apart
WORD = re.compile(r"(?<![@#\w])[^\W\d_]{3,}(?!\w)")
URL = re.compile(r"https?://\S+|www\.\S+")
KINDS = ("latency", "predict_latency", "error_rate", "error_burst", "prediction_mix", "vocabulary", "consumer_lag")
UNITS = {"latency": "ms", "predict_latency": "ms", "error_rate": "ratio", "error_burst": "errors",
         "prediction_mix": "share", "vocabulary": "share", "consumer_lag": "messages"}


@dataclass(frozen=True, slots=True)
class HealthTier:
    threshold: float
    minutes: int


@dataclass(frozen=True, slots=True)
class HealthRule:
    name: str
    enabled: bool
    team: str
    tiers: dict[str, HealthTier]  # severity -> tier; a severity may be absent
    min_volume: int  # tweets (words for vocabulary, requests for predict_latency) a window needs
    renotify_minutes: float
    resolve_minutes: float


_TIER = {"threshold": Field(float, check=non_negative), "minutes": Field(int, check=positive)}
_RULE = {"enabled": Field(bool, True), "team": Field(str, "devops", one_of(TEAMS, "team")),
         "min_volume": Field(int, 0, non_negative), "renotify_minutes": Field(float, 60.0, non_negative),
         "resolve_minutes": Field(float, 10.0, positive), "warning": Field(dict, None), "critical": Field(dict, None)}


def parse_health(doc: Mapping[str, Any], source: str) -> dict[str, HealthRule]:
    """The ``[health.*]`` tables: a rule absent from the file is off."""
    out: dict[str, HealthRule] = {}
    for name, table in subtables(doc.get("health", {}), KINDS, "health rule", source, "health").items():
        d = check_table(table, _RULE, source, f"health.{name}")
        tiers = {sev: HealthTier(**check_table(d[sev], _TIER, source, f"health.{name}.{sev}"))
                 for sev in SEVERITIES if d[sev] is not None}
        if not tiers:
            raise fail(source, f"health.{name}", "needs a [warning] or a [critical] tier (or both)")
        out[name] = HealthRule(name, d["enabled"], d["team"], tiers, d["min_volume"], d["renotify_minutes"],
                               d["resolve_minutes"])
    return out


def unknown_words(text: str, vocabulary: frozenset[str]) -> tuple[int, int]:
    """(words, words not in ``vocabulary``): letters-only words of 3+ characters, lower-cased, outside
    mentions, hashtags and links (names and tags are not language)."""
    words = WORD.findall(URL.sub(" ", text))
    return len(words), sum(1 for w in words if w.lower() not in vocabulary)


@dataclass
class Minute:
    tweets: int = 0
    dead: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    words: int = 0
    unknown: int = 0
    latency: dict[str, list[int]] = field(default_factory=dict)  # source -> histogram counts
    lag: int | None = None  # total input lag seen last in the minute


def latency_bin(seconds: float) -> int:
    """The bin of a latency in histograms over :data:`LATENCY_EDGES_MS` (the last one holds the rest)."""
    return min(bisect_left(LATENCY_EDGES_MS, seconds * 1000), len(LATENCY_EDGES_MS) - 1)


def p95(hist: list[int]) -> tuple[float, int]:
    """(P95 in ms, count) of a histogram over :data:`LATENCY_EDGES_MS` (the upper edge of the P95's bin)."""
    n = sum(hist)
    if not n:
        return 0.0, 0
    rank, seen = math.ceil(0.95 * n), 0
    for i, c in enumerate(hist):
        seen += c
        if seen >= rank:
            return LATENCY_EDGES_MS[min(i, len(LATENCY_EDGES_MS) - 1)], n
    return LATENCY_EDGES_MS[-1], n


class HealthMonitor:
    """Per-minute signals and the health rules over them; ``now`` is epoch seconds from the caller."""

    def __init__(self, rules: Mapping[str, HealthRule]) -> None:
        self.rules = {n: r for n, r in rules.items() if r.enabled}
        self.keep = max([t.minutes for r in self.rules.values() for t in r.tiers.values()] or [1]) + 2
        self.minutes: dict[int, Minute] = {}
        self.alerts: dict[str, Any] = {}
        self.evaluated: int | None = None

    def _minute(self, now: float) -> Minute:
        m = int(now // 60)
        if m not in self.minutes:
            self.minutes[m] = Minute()
            for old in [k for k in self.minutes if k <= m - self.keep]:
                del self.minutes[old]
        return self.minutes[m]

    def observe_batch(self, now: float, *, tweets: int = 0, dead: int = 0, labels: Iterable[str] = (),
                      latencies_s: Iterable[float] = (), words: int = 0, unknown: int = 0) -> None:
        m = self._minute(now)
        m.tweets += tweets
        m.dead += dead
        for label in labels:
            m.labels[label] = m.labels.get(label, 0) + 1
        m.words += words
        m.unknown += unknown
        for s in latencies_s:
            self._latency(m, "stream", s)

    def observe_latency(self, now: float, source: str, seconds: float) -> None:
        self._latency(self._minute(now), source, seconds)

    @staticmethod
    def _latency(m: Minute, source: str, seconds: float) -> None:
        hist = m.latency.setdefault(source, [0] * len(LATENCY_EDGES_MS))
        hist[latency_bin(seconds)] += 1

    def observe_lag(self, now: float, total: int) -> None:
        self._minute(now).lag = total

    def value(self, rule: str, end: int, minutes: int) -> tuple[float, int, str]:
        """(value, volume, subject) of ``rule`` over the ``minutes`` complete minutes before minute ``end``."""
        window = [self.minutes.get(k) or Minute() for k in range(end - minutes, end)]
        if rule in ("latency", "predict_latency"):
            source = "stream" if rule == "latency" else "predict"
            per_minute = [p95(m.latency.get(source, [])) for m in window]
            return min(v for v, _ in per_minute), sum(n for _, n in per_minute), source
        tweets, dead = sum(m.tweets for m in window), sum(m.dead for m in window)
        if rule == "error_rate":
            return (dead / tweets if tweets else 0.0), tweets, "errors"
        if rule == "error_burst":
            return float(dead), dead, "errors"
        if rule == "prediction_mix":
            labels: dict[str, int] = {}
            for m in window:
                for k, v in m.labels.items():
                    labels[k] = labels.get(k, 0) + v
            n = sum(labels.values())
            top = max(sorted(labels), key=labels.__getitem__) if labels else "none"
            return (labels.get(top, 0) / n if n else 0.0), n, top
        if rule == "vocabulary":
            words = sum(m.words for m in window)
            return (sum(m.unknown for m in window) / words if words else 0.0), words, "unknown_words"
        # consumer_lag: growth over the window, counted only when the lag never went down
        lags = [m.lag for m in [self.minutes.get(end - minutes - 1) or Minute(), *window]]
        if any(lag is None for lag in lags):
            return 0.0, 0, "input"
        rising = all(b >= a for a, b in zip(lags, lags[1:], strict=False))
        return (float(lags[-1] - lags[0]) if rising else 0.0), len(lags), "input"

    def evaluate(self, now: float) -> list[Candidate]:
        """Judge every rule on the minutes that ended since the last call (each minute once)."""
        end = int(now // 60)  # the current minute is incomplete
        start = end if self.evaluated is None else self.evaluated + 1
        out: list[Candidate] = []
        for m in range(max(start, end - self.keep + 2), end + 1):
            out += self._judge(m)
        self.evaluated = end
        return out

    def _judge(self, end: int) -> list[Candidate]:
        out = []
        for name, rule in self.rules.items():
            fired, shown = None, None
            for sev in SEVERITIES:
                tier = rule.tiers.get(sev)
                if tier is None:
                    continue
                value, volume, subject = self.value(name, end, tier.minutes)
                hit = volume >= rule.min_volume and value >= tier.threshold
                if shown is None or hit:  # the highest tier hit, else the first tier's figures
                    shown = (sev, tier, value, volume, subject)
                if hit:
                    fired = sev
            sev, tier, value, volume, subject = shown
            # one alert per rule; it keeps the subject it started with (the label of a skewed mix)
            subject = (self.alerts.get(name) or {}).get("subject", subject)
            notice = lifecycle(self.alerts, name, end * 60_000, fired, rule.renotify_minutes, rule.resolve_minutes)
            if notice is None:
                continue
            reason, severity, since = notice
            if reason == "new":
                self.alerts[name]["subject"] = subject
            tier = rule.tiers.get(severity, tier)
            unit = UNITS[name]
            out.append(Candidate(
                name, severity, BRAND, subject, iso((end - tier.minutes) * 60), iso(end * 60),
                round(value, 4), None, tier.threshold, status="resolved" if reason == "resolved" else "firing",
                reason=reason, incident_start=iso(since / 1000), team=rule.team,
                note=f"{name}: {round(value, 4)} {unit} over {tier.minutes} min (threshold {tier.threshold} {unit}, "
                     f"volume {volume})"))
        return out

"""``badbuzz alerts backtest``: a tweet file through the same enrichment and the same alert engine, offline.

No broker: tweets are enriched in batches (the worker's :class:`~stream_app.enrich.Enricher`), sorted by
event time and fed to :class:`~stream_app.alerting.engine.AlertEngine` brand by brand; the end of the file
finalises every bucket. The output is what would have been sent (rule, severity, brand, day).

With ``--labels`` the file's human sentiment column also defines *surge episodes* and the alerts are scored
against them (the method of issue 18): per brand, UTC hourly counts of labelled negatives, zero hours
included from the brand's first to the file's last hour; a surge hour has count > median + 3 MAD of that
series and >= ``episode_floor``; consecutive surge hours form an episode. An alert matches an episode of
its brand when its window lies within ``slack`` (1 h) of it. Precision = matched firing alerts / firing
alerts (spike rules); recall = episodes with a match / episodes; time to detect = first matching alert's
window end - episode start (0 when an alert came in the hour before).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .alerting.engine import AlertEngine
from .alerting.rules import Candidate, RuleSet
from .kpi import NO_INCIDENT
from .parsing import InvalidTweet, parse_tweet
from .sources import brand_slug, read_rows, stable_id

TIME_COLUMNS = ("created_at", "tweet_created", "timestamp")
BRAND_COLUMNS = ("brand", "airline", "operator")
LABEL_COLUMNS = ("airline_sentiment", "sentiment", "label")
SPIKE_RULES = ("negative_spike", "incident_spike")
HOUR_MS = 3_600_000


def _first(row: dict[str, Any], names: Sequence[str]) -> Any:
    for n in names:
        if row.get(n) not in (None, ""):
            return row[n]
    return None


@dataclass(slots=True)
class Loaded:
    tweets: list[dict[str, Any]]  # parsed input tweets, with brand and event_time_ms
    labels: dict[str, str]  # tweet id -> human sentiment label (when the file has one)
    invalid: Counter = field(default_factory=Counter)


def load_file(path: str | Path, brand: str | None = None) -> Loaded:
    """Parse every row with the worker's own input contract; rows it rejects are counted by reason."""
    tweets: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    invalid: Counter = Counter()
    for i, row in enumerate(read_rows(path)):
        text = row.get("text")
        tid = row.get("id") or row.get("tweet_id") or stable_id(path, i, str(text))
        raw = {"id": str(tid), "text": text, "created_at": _first(row, TIME_COLUMNS)}
        b = brand or _first(row, BRAND_COLUMNS)
        if b:
            raw["brand"] = brand_slug(str(b))
        for k in ("lang", "author"):
            if row.get(k) not in (None, ""):
                raw[k] = row[k]
        try:
            tweet = parse_tweet(orjson.dumps(raw))
        except InvalidTweet as exc:
            invalid[exc.code] += 1
            continue
        tweets.append(tweet)
        label = _first(row, LABEL_COLUMNS)
        if label:
            labels[tweet["id"]] = str(label).strip().lower()
    return Loaded(tweets, labels, invalid)


def enrich_all(tweets: list[dict[str, Any]], enricher: Any, batch: int = 64) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(tweets), batch):
        out += enricher.enrich(tweets[i : i + batch])
    return out


def run_engine(rules: RuleSet, enriched: Iterable[dict[str, Any]]) -> list[Candidate]:
    """The alert engine over enriched tweets in event-time order (ties by id), one state per brand."""
    engine = AlertEngine(rules)
    states: dict[str, dict[str, Any]] = {}
    out: list[Candidate] = []
    for ev in sorted(enriched, key=lambda e: (e["event_time_ms"], e["id"])):
        brand = ev.get("brand") or "-"
        states[brand], res = engine.ingest(states.get(brand), brand, ev)
        out += res.candidates
    for brand, st in states.items():
        out += engine.flush(st, brand)
    return out


# --------------------------------------------------------------------------------------------- episodes


@dataclass(frozen=True, slots=True)
class Episode:
    brand: str
    start_ms: int  # first surge hour
    end_ms: int  # exclusive end of the last surge hour
    peak: int
    threshold: float  # the brand's median + k MAD over the whole file (what made these hours surge hours)


def surge_episodes(tweets: Iterable[dict[str, Any]], labels: dict[str, str], floor: int = 12,
                   k: float = 3.0) -> list[Episode]:
    """Episodes of labelled negatives per brand (see the module docstring)."""
    hourly: dict[str, Counter] = defaultdict(Counter)
    first: dict[str, int] = {}
    last_hour = 0
    for t in tweets:
        h = t["event_time_ms"] // HOUR_MS
        b = t.get("brand") or "-"
        first[b] = min(first.get(b, h), h)
        last_hour = max(last_hour, h)
        if labels.get(t["id"]) == "negative":
            hourly[b][h] += 1
    episodes: list[Episode] = []
    for b in sorted(first):
        hours = range(first[b], last_hour + 1)
        series = [hourly[b][h] for h in hours]
        med = statistics.median(series)
        mad = statistics.median([abs(v - med) for v in series])
        surge = [h for h in hours if hourly[b][h] > med + k * mad and hourly[b][h] >= floor]
        run: list[int] = []
        for h in [*surge, None]:
            if run and (h is None or h != run[-1] + 1):
                episodes.append(Episode(b, run[0] * HOUR_MS, (run[-1] + 1) * HOUR_MS,
                                        max(hourly[b][x] for x in run), max(med + k * mad, floor - 1)))
                run = []
            if h is not None:
                run.append(h)
    return episodes


def ceiling_minutes(tweets: Iterable[dict[str, Any]], labels: dict[str, str], episodes: Sequence[Episode],
                    slack_ms: int = HOUR_MS) -> float | None:
    """Median time to detect of a clairvoyant detector: it knows each brand's whole-file threshold and fires
    the moment a sliding hour of labelled negatives exceeds it (from ``slack`` before the episode). Anything
    faster must fire before the counts that define the episode exist, i.e. predict, and pays in precision."""
    negs: dict[str, list[int]] = defaultdict(list)
    for t in tweets:
        if labels.get(t["id"]) == "negative":
            negs[t.get("brand") or "-"].append(t["event_time_ms"])
    out: list[float] = []
    for e in episodes:
        times = sorted(x for x in negs[e.brand] if e.start_ms - slack_ms <= x < e.end_ms)
        lo = 0
        for hi, x in enumerate(times):
            while times[lo] <= x - HOUR_MS:
                lo += 1
            if hi - lo + 1 > e.threshold:
                out.append(max(0.0, (x - e.start_ms) / 60_000))
                break
    return round(statistics.median(out), 1) if out else None


def _ms(iso_ts: str) -> int:
    return int(datetime.fromisoformat(iso_ts.replace("Z", "+00:00")).timestamp() * 1000)


def score(alerts: Sequence[Candidate], episodes: Sequence[Episode], slack_ms: int = HOUR_MS) -> dict[str, Any]:
    """Lenient precision / recall / time to detect of the firing spike alerts against the episodes."""
    firing = [a for a in alerts if a.status == "firing" and a.rule in SPIKE_RULES]

    def matches(a: Candidate, e: Episode) -> bool:
        return a.brand == e.brand and _ms(a.window_end) >= e.start_ms - slack_ms and \
            _ms(a.window_start) <= e.end_ms + slack_ms

    matched = [a for a in firing if any(matches(a, e) for e in episodes)]
    detect: list[float] = []
    found = 0
    for e in episodes:
        hits = sorted(_ms(a.window_end) for a in firing if matches(a, e))
        if hits:
            found += 1
            detect.append(max(0.0, (hits[0] - e.start_ms) / 60_000))
    return {
        "alerts": len(firing),
        "matched_alerts": len(matched),
        "precision": round(len(matched) / len(firing), 3) if firing else None,
        "episodes": len(episodes),
        "detected": found,
        "recall": round(found / len(episodes), 3) if episodes else None,
        "median_minutes_to_detect": round(statistics.median(detect), 1) if detect else None,
        "minutes_to_detect": [round(x, 1) for x in detect],
    }


def summary(alerts: Sequence[Candidate]) -> dict[str, Any]:
    """Counts per rule/severity/brand/day, and the worst day's critical count per brand."""
    per: Counter = Counter()
    crit_day: Counter = Counter()
    for a in alerts:
        if a.status != "firing":
            continue
        day = a.window_end[:10]
        per[(a.rule, a.severity, a.brand, day)] += 1
        if a.severity == "critical":
            crit_day[(a.brand, day)] += 1
    worst: dict[str, int] = {}
    for (brand, _day), n in crit_day.items():
        worst[brand] = max(worst.get(brand, 0), n)
    return {"rows": sorted(per.items()), "max_critical_per_brand_day": worst,
            "resolved": sum(1 for a in alerts if a.status == "resolved")}


def backtest(path: str | Path, rules: RuleSet, enricher: Any | None, *, labels: bool = False,
             episode_floor: int = 12, sentiment_from_labels: bool = False) -> dict[str, Any]:
    """Run the whole backtest; ``enricher=None`` needs ``sentiment_from_labels`` (rules fed the human labels)."""
    started = time.perf_counter()
    loaded = load_file(path)
    enriched = _enriched(loaded, enricher, sentiment_from_labels)
    enrich_s = time.perf_counter() - started
    alerts = run_engine(rules, enriched)
    result: dict[str, Any] = {
        "file": str(path), "tweets": len(loaded.tweets), "invalid": dict(loaded.invalid),
        "alerts": [a.to_dict() for a in alerts], "summary": summary(alerts),
        "neutral_positive_only": _neutral_positive_alerts(rules, enriched, loaded.labels) if labels else None,
        "seconds": {"enrich": round(enrich_s, 1), "total": round(time.perf_counter() - started, 1)},
    }
    if labels:
        if not loaded.labels:
            raise ValueError(f"{path}: no label column ({', '.join(LABEL_COLUMNS)})")
        episodes = surge_episodes(loaded.tweets, loaded.labels, episode_floor)
        result["episodes"] = [{"brand": e.brand, "start": _iso(e.start_ms), "end": _iso(e.end_ms), "peak": e.peak,
                               "threshold": e.threshold} for e in episodes]
        result["score"] = score(alerts, episodes)
        result["score"]["clairvoyant_median_minutes_to_detect"] = ceiling_minutes(loaded.tweets, loaded.labels,
                                                                                  episodes)
    return result


def _neutral_positive_alerts(rules: RuleSet, enriched: list[dict[str, Any]], labels: dict[str, str]) -> int:
    """Firing alerts when only the rows labelled neutral or positive are replayed (should be 0)."""
    calm = [e for e in enriched if labels.get(e["id"]) in ("neutral", "positive")]
    return sum(1 for a in run_engine(rules, calm) if a.status == "firing")


def _enriched(loaded: Loaded, enricher: Any | None, from_labels: bool) -> list[dict[str, Any]]:
    if enricher is not None:
        out = enrich_all(loaded.tweets, enricher)
    else:
        out = [dict(t) for t in loaded.tweets]
    if from_labels:
        for e in out:
            label = loaded.labels.get(e["id"], "neutral")
            e["sentiment"] = {"label": label, "score": 1.0, "probs": {label: 1.0}}
            if enricher is None:
                e.setdefault("incident", NO_INCIDENT)
    return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def render(result: dict[str, Any]) -> str:
    """Human-readable report."""
    lines = [f"{result['file']}: {result['tweets']} tweets"
             + (f" ({sum(result['invalid'].values())} invalid: {result['invalid']})" if result["invalid"] else "")]
    lines.append("alerts that would have been sent (firing; rule severity brand day: count):")
    for (rule, sev, brand, day), n in result["summary"]["rows"]:
        lines.append(f"  {rule:18} {sev:8} {brand:16} {day}  {n}")
    lines.append(f"  resolved notices: {result['summary']['resolved']}; max critical per brand per day: "
                 f"{result['summary']['max_critical_per_brand_day'] or 0}")
    if "score" in result:
        s = result["score"]
        lines.append(f"surge episodes: {s['episodes']}, detected {s['detected']} -> recall {s['recall']}; "
                     f"spike alerts {s['alerts']}, within 1 h of an episode {s['matched_alerts']} -> "
                     f"precision {s['precision']}; median time to detect {s['median_minutes_to_detect']} min")
        lines.append(f"a clairvoyant count detector (whole-file thresholds) would need "
                     f"{s['clairvoyant_median_minutes_to_detect']} min (median)")
        lines.append(f"alerts on the neutral/positive rows alone: {result['neutral_positive_only']}")
    lines.append(f"time: enrichment {result['seconds']['enrich']} s, total {result['seconds']['total']} s")
    return "\n".join(lines)

"""The event-time alert engine: one brand's counts, watermark, baselines and alert states.

The worker (``agents.py``) and the offline backtest (``badbuzz alerts backtest``) both drive this class,
so they raise the same alerts from the same tweets. Everything is event time: the wall clock never enters
here (the runtime decides *when* to call :meth:`AlertEngine.advance` on a quiet brand, not what it yields).

Per brand, one JSON-able state dict (a Faust table value):

- ``src``: highest event time seen per source (input partition). The watermark is the lowest of them
  minus ``allowed_lateness``, so partitions read at different speeds (a fast replay) still finalise
  buckets in the same order as a paced stream. A bucket accepts tweets until the watermark passes it;
  later ones are counted as ``late`` and dropped.
- ``open``: buckets not yet final, with the tweet ids counted in them (re-deliveries count once).
- ``minutes``: final per-bucket counts of the last hour (trailing windows, samples);
  ``hours``: final hourly counts over the baseline horizon (days).
- ``alerts``: one state per ``rule:subject`` (an ongoing incident keeps one alert: it escalates,
  re-notifies slowly and resolves); ``claims``: critical claims waiting for their group interval.

Every final bucket is evaluated once, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..kpi import incident_of
from .detect import Level, spike_level, thresholds
from .rules import SEVERITIES, Candidate, RuleSet, lifecycle, severity_rank
from .windows import iso, sample_from_tweet, top_samples

MINUTE_SAMPLES = 3
SAMPLES_PER_ALERT = 3
REPORTS_LISTED = 5  # a misclassification alert lists the reported tweets (the seeds: 3 reports = an alert)
MAX_PENDING_CLAIMS = 50
WARMUP_MIN_MINUTES = 10  # a brand seen for less than this before the window has no rate to compare with


@dataclass(slots=True)
class Outcome:
    """What one call did: candidates to publish, and how the input was counted."""

    candidates: list[Candidate] = field(default_factory=list)
    counted: int = 0
    duplicates: int = 0
    late: int = 0


def new_state() -> dict[str, Any]:
    return {"src": {}, "final": None, "open": {}, "minutes": {}, "hours": {}, "first_bucket": None,
            "alerts": {}, "claims": {"pending": [], "last_sent": None}}


class AlertEngine:
    """Pure transitions over one brand's state; see the module docstring."""

    def __init__(self, rules: RuleSet, expected_sources: int = 1) -> None:
        self.rules = rules
        self.bucket_ms = rules.buckets.seconds * 1000
        self.expected_sources = max(1, expected_sources)
        self.lateness_ms = int(rules.allowed_lateness_seconds * 1000)
        self._per_hour = max(1, 3600 // rules.buckets.seconds)
        windows = [rules.negative_spike.params.windows_minutes, rules.incident_spike.params.windows_minutes]
        self._keep_minutes = max(max(w) for w in windows) * 60 // rules.buckets.seconds + 1
        self._keep_minutes = max(self._keep_minutes, rules.buckets.per_minutes(rules.misclassification.window_minutes))
        self._keep_hours = max(rules.negative_spike.params.baseline_hours, rules.incident_spike.params.baseline_hours)

    # ------------------------------------------------------------------------------------------ input

    def ingest(self, state: dict[str, Any] | None, brand: str, event: Mapping[str, Any], source: str | None = "-",
               kind: str = "tweet") -> tuple[dict[str, Any], Outcome]:
        """Count one enriched tweet (``kind="tweet"``) or one misclassification report (``"misclassification"``,
        with ``event_time_ms`` and ``id``), then finalise what the watermark allows. ``source`` names the
        input partition; ``None`` (feedback, a side stream) does not move the watermark."""
        st = state if state is not None else new_state()
        out = Outcome()
        at_ms = int(event["event_time_ms"])
        bucket = at_ms // self.bucket_ms
        if st["final"] is not None and bucket <= st["final"]:
            out.late += 1
        else:
            b = st["open"].setdefault(str(bucket), {"n": 0, "neg": 0, "inc": {}, "mis": 0, "ids": [],
                                                     "samples": [], "claims": []})
            uid = f"{kind[0]}:{event.get('id')}"
            if uid in b["ids"]:
                out.duplicates += 1
            else:
                b["ids"].append(uid)
                out.counted += 1
                if kind == "tweet":
                    self._add_tweet(b, event)
                else:
                    b["mis"] += 1
                    reporter = str(event.get("reporter") or "")
                    if reporter not in b.setdefault("rep", []):
                        b["rep"].append(reporter)
                    # apart from the tweet samples: a busy minute's tweets must not push the reports out
                    b["reports"] = [*b.get("reports", []), _report_sample(event)][-REPORTS_LISTED:]
                    if self.rules.misclassification.enabled:
                        out.candidates += self._reports(st, brand, bucket, early=True)
        if st["first_bucket"] is None or bucket < st["first_bucket"]:
            st["first_bucket"] = bucket
        if source is None:
            return st, out
        src = st["src"]
        src[source] = max(int(src.get(source, at_ms)), at_ms)
        if len(src) >= self.expected_sources:
            out.candidates += self._finalise_until(st, brand, min(int(v) for v in src.values()) - self.lateness_ms)
        return st, out

    def advance(self, state: dict[str, Any], brand: str, watermark_ms: int) -> list[Candidate]:
        """Finalise every bucket ending at or before ``watermark_ms`` (a quiet brand, end of input)."""
        return self._finalise_until(state, brand, watermark_ms)

    def flush(self, state: dict[str, Any], brand: str) -> list[Candidate]:
        """End of a finite input: every bucket seen is final."""
        if not state["open"]:
            return []
        last = max(int(b) for b in state["open"])
        return self._finalise_until(state, brand, (last + 1) * self.bucket_ms)

    def negative_threshold(self, state: dict[str, Any]) -> tuple[float, bool] | None:
        """(negative_spike's warning threshold per hour now, still warming up?); ``None`` before any final bucket."""
        if state.get("final") is None or state.get("first_bucket") is None:
            return None
        p = self.rules.negative_spike.params
        hourly = self._hourly(state, state["final"], p.baseline_hours, lambda m: m["neg"] if m else 0)
        _, limits = thresholds(p, hourly)
        warming = len(hourly) < p.warmup_hours
        return (max(limits["warning"], p.warmup_floor) if warming else limits["warning"]), warming

    def max_event_ms(self, state: dict[str, Any]) -> int | None:
        return max((int(v) for v in state["src"].values()), default=None)

    def _add_tweet(self, b: dict[str, Any], tweet: Mapping[str, Any]) -> None:
        b["n"] += 1
        sentiment = tweet.get("sentiment") or {}
        # A label in a language the model card does not cover is shown, never counted: an English-only model
        # reads "vol annulé sans prévenir" as positive, and a French storm must not hide behind it.
        negative = sentiment.get("label") == "negative" and sentiment.get("reliable", True) is not False
        b["neg"] += negative
        incident = incident_of(tweet)  # "none" is no incident
        if incident and incident not in self.rules.incident_spike.ignore:
            b["inc"][incident] = b["inc"].get(incident, 0) + 1
        if negative or incident:
            b["samples"] = top_samples([*b["samples"], sample_from_tweet(tweet)], MINUTE_SAMPLES + 2)
        c = self.rules.critical_claim
        if c.enabled and tweet.get("is_claim") and tweet.get("urgency") == c.urgency:
            followers = (tweet.get("author") or {}).get("followers") or 0
            fired = [sev for sev in SEVERITIES if followers >= c.tiers[sev]]
            if fired:
                b["claims"].append(sample_from_tweet(tweet) | {"severity": fired[-1], "followers": followers,
                                                               "at_ms": int(tweet["event_time_ms"])})

    # ----------------------------------------------------------------------------------- finalisation

    def _finalise_until(self, st: dict[str, Any], brand: str, watermark_ms: int) -> list[Candidate]:
        last_final = watermark_ms // self.bucket_ms - 1  # buckets ending at or before the watermark
        if st["final"] is not None and last_final <= st["final"]:
            return []
        open_buckets = sorted(int(b) for b in st["open"])
        start = st["final"] + 1 if st["final"] is not None else (open_buckets[0] if open_buckets else last_final + 1)
        out: list[Candidate] = []
        b = start
        while b <= last_final:
            if not self._busy(st) and not any(ob >= b for ob in open_buckets if ob <= last_final):
                b = last_final + 1  # nothing open, nothing counted ahead: skip the empty stretch
                break
            out += self._finalise(st, brand, b)
            b += 1
        st["final"] = last_final
        return out

    def _busy(self, st: dict[str, Any]) -> bool:
        """Alerts to resolve, claims to send or recent counts to slide out: empty buckets still matter."""
        return bool(st["alerts"] or st["claims"]["pending"] or st["minutes"])

    def _finalise(self, st: dict[str, Any], brand: str, bucket: int) -> list[Candidate]:
        b = st["open"].pop(str(bucket), None)
        minutes, hours = st["minutes"], st["hours"]
        if b is not None and (b["n"] or b["mis"]):
            minutes[str(bucket)] = {"n": b["n"], "neg": b["neg"], "inc": b["inc"], "mis": b["mis"],
                                    "rep": b.get("rep", []), "samples": b["samples"][:MINUTE_SAMPLES + 2],
                                    "reports": b.get("reports", [])}
            h = hours.setdefault(str(bucket // self._per_hour), {"neg": 0, "inc": {}})
            h["neg"] += b["neg"]
            for t, n in b["inc"].items():
                h["inc"][t] = h["inc"].get(t, 0) + n
        if b is not None and b["claims"]:
            pend = st["claims"]["pending"]
            pend += b["claims"]
            del pend[: max(0, len(pend) - MAX_PENDING_CLAIMS)]
        for k in [k for k in minutes if int(k) <= bucket - self._keep_minutes]:
            del minutes[k]
        this_hour = bucket // self._per_hour
        for k in [k for k in hours if int(k) < this_hour - self._keep_hours - 1]:
            del hours[k]
        return self._evaluate(st, brand, bucket)

    # ------------------------------------------------------------------------------------- evaluation

    def _window(self, bucket: int, minutes: float) -> list[str]:
        """State keys of the buckets of the ``minutes`` ending with ``bucket``."""
        n = self.rules.buckets.per_minutes(minutes)
        return [str(b) for b in range(bucket - n + 1, bucket + 1)]

    def _trailing(self, st: dict[str, Any], bucket: int, minutes: int, value) -> int:
        return sum(value(st["minutes"][k]) for k in self._window(bucket, minutes) if k in st["minutes"])

    def _hourly(self, st: dict[str, Any], bucket: int, baseline_hours: int, value) -> list[float]:
        """Complete hours before the longest window, oldest first, zero hours included, since first seen."""
        first = st["first_bucket"] // self._per_hour
        longest = max(self.rules.negative_spike.params.windows_minutes)
        end_hour = (bucket - self.rules.buckets.per_minutes(longest) + 1) // self._per_hour  # exclusive
        start = max(first, end_hour - baseline_hours)
        return [float(value(st["hours"].get(str(h)))) for h in range(start, end_hour)]

    def _seen_rate(self, st: dict[str, Any], bucket: int, recent: int, minutes_recent: int, value) -> float | None:
        """Hourly rate of ``value`` from the brand's first bucket to the start of the shortest window (whose
        count is ``recent``): the only baseline a warming brand has."""
        n = self.rules.buckets.per_minutes(minutes_recent)
        minutes = (bucket - n + 1 - st["first_bucket"]) * self.rules.buckets.seconds / 60
        if minutes < WARMUP_MIN_MINUTES:
            return None
        before = sum(value(h) for h in st["hours"].values()) - recent
        return max(0.0, before) * 60.0 / minutes

    def _evaluate(self, st: dict[str, Any], brand: str, bucket: int) -> list[Candidate]:
        out: list[Candidate] = []
        r = self.rules.negative_spike
        if r.enabled:
            out += self._spike(st, brand, bucket, r, "negative", lambda m: m["neg"] if m else 0,
                               lambda s: s.get("negative"))
        r = self.rules.incident_spike
        if r.enabled:
            recent: set[str] = set()
            for m in st["minutes"].values():
                recent.update(m["inc"])
            subjects = sorted(recent | {k.split(":", 1)[1] for k in st["alerts"] if k.startswith(r.name + ":")})
            for t in subjects:
                if r.types and t not in r.types:
                    continue
                out += self._spike(st, brand, bucket, r, t, lambda m, t=t: (m["inc"].get(t, 0) if m else 0),
                                   lambda s, t=t: t in (s.get("incidents") or ()))
        if self.rules.misclassification.enabled:
            out += self._reports(st, brand, bucket, early=False)
        if self.rules.critical_claim.enabled:
            out += self._claims(st, brand, bucket)
        return out

    def _reports(self, st: dict[str, Any], brand: str, bucket: int, early: bool) -> list[Candidate]:
        """The misclassification rule on the window ending with ``bucket``. Reports are a side stream that
        does not move the watermark, so they are also judged as they arrive (``early``), open buckets
        included; the final evaluation of the same buckets then finds the alert already open (same key).
        Only a final evaluation may find the rule quiet (and resolve it)."""
        m = self.rules.misclassification
        keys = self._window(bucket, m.window_minutes)
        parts = [p for k in keys for p in (st["minutes"].get(k), st["open"].get(k) if early else None) if p]
        count = self._report_count(parts)
        fired = m.fired(count)
        if early and not fired:
            return []
        severity = fired[-1] if fired else None
        level = Level(severity, int(m.window_minutes), count, float(count), float(m.threshold(severity)), 0.0)
        samples = tuple(top_samples([x for p in parts for x in p.get("reports", ())], REPORTS_LISTED))
        return self._track(st, brand, bucket, m, "model", level, samples, count_rule=True)

    def _report_count(self, parts: list[dict[str, Any]]) -> int:
        """Reports in the window, or their distinct reporters: one person clicking "wrong label" ten times
        is one voice, not ten (``distinct_reporters``)."""
        if self.rules.misclassification.distinct_reporters:
            return len({r for p in parts for r in p.get("rep", ())})
        return sum(p["mis"] for p in parts)

    def _samples(self, st: dict[str, Any], bucket: int, minutes: float, keep) -> tuple[dict[str, Any], ...]:
        pool = [s for k in self._window(bucket, minutes) if k in st["minutes"]
                for s in st["minutes"][k]["samples"] if keep(s)]
        return tuple(top_samples(pool, SAMPLES_PER_ALERT))

    def _spike(self, st, brand, bucket, rule, subject, value, sample_filter) -> list[Candidate]:
        p = rule.params
        trailing = {w: self._trailing(st, bucket, w, value) for w in p.windows_minutes}
        hourly = self._hourly(st, bucket, p.baseline_hours, value)
        short = p.windows_minutes[0]
        seen = self._seen_rate(st, bucket, trailing[short], short, value) if len(hourly) < p.warmup_hours else None
        level = spike_level(p, trailing, hourly, seen)
        if level is None:
            level = Level(None, p.windows_minutes[-1], 0, 0.0, 0.0, 0.0)
        samples = self._samples(st, bucket, level.window_minutes, sample_filter) if level.severity else ()
        return self._track(st, brand, bucket, rule, subject, level, samples)

    def _track(self, st, brand, bucket, rule, subject, level: Level, samples, count_rule: bool = False):
        """One alert per ``rule:subject`` while it lasts: new, escalation, repeat, resolved."""
        key = f"{rule.name}:{subject}"
        end_ms = (bucket + 1) * self.bucket_ms
        observed = float(level.count) if count_rule else round(level.rate, 2)

        def cand(severity: str, since_ms: int, status: str = "firing", reason: str = "new") -> Candidate:
            start_bucket = bucket - self.rules.buckets.per_minutes(level.window_minutes) + 1
            return Candidate(rule.name, severity, brand, subject, iso(start_bucket * self.rules.buckets.seconds),
                             iso(end_ms / 1000), observed, None if count_rule else round(level.baseline, 2),
                             round(level.threshold, 2), samples, status=status, reason=reason,
                             incident_start=iso(since_ms / 1000), team=rule.team)

        notice = lifecycle(st["alerts"], key, end_ms, level.severity, rule.renotify_minutes, rule.resolve_minutes)
        if notice is None:
            return []
        reason, severity, since = notice
        return [cand(severity, since, status="resolved" if reason == "resolved" else "firing", reason=reason)]

    def _claims(self, st: dict[str, Any], brand: str, bucket: int) -> list[Candidate]:
        """Alertmanager's group_interval: the first claim goes out with its bucket, later ones wait and go
        together, one alert per brand per interval listing them."""
        c = st["claims"]
        rule = self.rules.critical_claim
        end_ms = (bucket + 1) * self.bucket_ms
        if not c["pending"]:
            return []
        if c["last_sent"] is not None and end_ms - c["last_sent"] < rule.group_interval_minutes * 60_000:
            return []
        pending = c["pending"]
        severity = max((p["severity"] for p in pending), key=severity_rank)
        first = min(p.get("at_ms", end_ms) for p in pending)
        c.update(pending=[], last_sent=end_ms)
        listed = tuple({k: v for k, v in s.items() if k not in ("severity", "at_ms")}
                       for s in sorted(pending, key=lambda p: (-p.get("followers", 0), str(p.get("id"))))
                       [: rule.max_listed])
        start = iso(min(first, end_ms - self.bucket_ms) / 1000)
        top = max(p.get("followers", 0) for p in pending)
        return [Candidate(rule.name, severity, brand, "claims", start, iso(end_ms / 1000), float(len(pending)),
                          None, float(rule.tiers["warning"]), listed, reason="new", incident_start=start,
                          note=f"{len(pending)} claim(s), widest reach {top} followers", team=rule.team)]


def _report_sample(event: Mapping[str, Any]) -> dict[str, Any]:
    """A misclassification report as an alert sample: the tweet, what the model said, what the reporter said."""
    text = str(event.get("text") or "")[:280]
    return {"id": str(event.get("id")), "text": text, "author": event.get("reporter"), "link": None,
            "score": float(event.get("event_time_ms", 0)) / 1e13, "incidents": [], "negative": False,
            "report": {"predicted": event.get("predicted_label"), "correct": event.get("correct_label"),
                       "reporter": event.get("reporter")}}

"""Alert rules as data (TOML) and their pure evaluation.

``evaluate(rules, brand, now_bucket, history, event=None)`` looks at the per-brand bucket counts
(:class:`~stream_app.alerting.windows.WindowCounts` keyed by bucket index) and returns
:class:`Candidate` alerts; the policy (:mod:`.policy`) then decides what is actually sent.

Rule semantics (all windows are sums of the last N-minute worth of tumbling buckets ending at ``now_bucket``):

- ``negative_spike``: negatives > max(floor, mean + k*sigma) where mean/sigma are an EWMA over the
  earlier non-overlapping windows of the same length for that brand; silent until ``warmup_windows``
  earlier windows exist. ``sigma`` is floored at ``min_sigma`` so a flat baseline does not make any
  uptick a spike.
- ``incident_spike``: the same, per incident type (subject = the type).
- ``negative_share``: negative / tweets >= share, with at least ``min_volume`` tweets in the window.
- ``misclassification``: misclassification reports in the window >= count (subject = ``"model"``).
- ``critical_claim``: evaluated on the event only: a claim with the configured urgency from an author with
  followers >= the tier's threshold (subject = tweet id, window = the event's bucket).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._schema import AlertConfigError, Field, check_table, fail, non_negative, positive, str_list, unit_interval
from .windows import (
    Buckets,
    Ewma,
    WindowCounts,
    earlier_window_values,
    iso,
    sample_from_tweet,
    top_samples,
    window_sum,
)

__all__ = [
    "AlertConfigError",
    "Candidate",
    "RuleSet",
    "SEVERITIES",
    "DEFAULT_RULES_PATH",
    "evaluate",
    "load_rules",
    "parse_rules",
    "severity_rank",
]

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "alert_rules.toml"
SEVERITIES = ("warning", "critical")
RULE_NAMES = ("negative_spike", "negative_share", "incident_spike", "misclassification", "critical_claim")
SAMPLES_PER_ALERT = 3
URGENCIES = ("low", "medium", "critical")


def severity_rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 0


class AlertKeys:
    """Alertmanager-style keys shared by candidates and alerts: group = rule:brand:subject, dedup adds the window."""

    __slots__ = ()
    rule: str
    brand: str
    subject: str | None
    window_start: str

    @property
    def group_key(self) -> str:
        return f"{self.rule}:{self.brand}:{self.subject}"

    @property
    def dedup_key(self) -> str:
        return f"{self.rule}:{self.brand}:{self.subject}:{self.window_start}"


@dataclass(frozen=True, slots=True)
class Candidate(AlertKeys):
    """A rule crossed a threshold; not yet deduplicated or routed."""

    rule: str
    severity: str
    brand: str
    subject: str
    window_start: str
    window_end: str
    observed: float
    baseline: float | None
    threshold: float
    samples: tuple[dict[str, Any], ...] = ()


    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = [dict(s) for s in self.samples]
        return d


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class SpikeTier:
    floor: float
    k: float


@dataclass(frozen=True, slots=True)
class SpikeRule:
    name: str
    enabled: bool
    window_minutes: float
    warmup_windows: int
    baseline_windows: int
    alpha: float
    min_sigma: float
    tiers: dict[str, SpikeTier]
    cooldown_minutes: float | None
    types: tuple[str, ...] = ()  # incident_spike only; empty = every type seen


@dataclass(frozen=True, slots=True)
class ShareRule:
    name: str
    enabled: bool
    window_minutes: float
    min_volume: int
    tiers: dict[str, float]  # severity -> share
    cooldown_minutes: float | None


@dataclass(frozen=True, slots=True)
class CountRule:
    name: str
    enabled: bool
    window_minutes: float
    tiers: dict[str, int]  # severity -> count
    cooldown_minutes: float | None


@dataclass(frozen=True, slots=True)
class ClaimRule:
    name: str
    enabled: bool
    urgency: str
    tiers: dict[str, int]  # severity -> min followers
    cooldown_minutes: float | None


@dataclass(frozen=True, slots=True)
class RuleSet:
    source: str
    buckets: Buckets
    negative_spike: SpikeRule
    negative_share: ShareRule
    incident_spike: SpikeRule
    misclassification: CountRule
    critical_claim: ClaimRule
    extra: dict[str, Any] = field(default_factory=dict)

    def rule(self, name: str) -> SpikeRule | ShareRule | CountRule | ClaimRule:
        return getattr(self, name)

    def cooldown_minutes(self, name: str) -> float | None:
        return self.rule(name).cooldown_minutes

    @property
    def history_buckets(self) -> int:
        """How many buckets (ending at now) :func:`evaluate` may read: fetch at least these from the table."""
        need = 1
        for r in (self.negative_spike, self.incident_spike):
            wb = self.buckets.per_minutes(r.window_minutes)
            need = max(need, wb * (r.baseline_windows + 1))
        for r in (self.negative_share, self.misclassification):
            need = max(need, self.buckets.per_minutes(r.window_minutes))
        return need


_COMMON = {"enabled": Field(bool, True), "cooldown_minutes": Field(float, None, non_negative)}
_SPIKE = {
    **_COMMON,
    "window_minutes": Field(float, 5.0, positive),
    "warmup_windows": Field(int, 4, non_negative),
    "baseline_windows": Field(int, 12, positive),
    "alpha": Field(float, 0.3, unit_interval),
    "min_sigma": Field(float, 1.0, non_negative),
    "warning": Field(dict),
    "critical": Field(dict),
}
_SPIKE_TIER = {"floor": Field(float, check=non_negative), "k": Field(float, check=non_negative)}
_SHARE = {
    **_COMMON,
    "window_minutes": Field(float, 5.0, positive),
    "min_volume": Field(int, 20, positive),
    "warning": Field(dict),
    "critical": Field(dict),
}
_SHARE_TIER = {"share": Field(float, check=unit_interval)}
_COUNT = {**_COMMON, "window_minutes": Field(float, 5.0, positive), "warning": Field(dict), "critical": Field(dict)}
_COUNT_TIER = {"count": Field(int, check=positive)}
_CLAIM = {
    **_COMMON,
    "urgency": Field(str, "critical", lambda v: None if v in URGENCIES else f"unknown urgency {v!r}"),
    "warning": Field(dict),
    "critical": Field(dict),
}
_CLAIM_TIER = {"followers": Field(int, check=non_negative)}
_SETTINGS = {"bucket_seconds": Field(int, 60, positive)}


def _tiers(data: dict, spec: dict, source: str, path: str, make: Callable[[dict], Any]) -> dict[str, Any]:
    return {sev: make(check_table(data[sev], spec, source, f"{path}.{sev}")) for sev in SEVERITIES}


def parse_rules(doc: Mapping[str, Any], source: str = "<rules>") -> RuleSet:
    """Build a :class:`RuleSet` from the parsed TOML document (``[settings]`` and ``[rules.*]``)."""
    settings = check_table(doc.get("settings", {}), _SETTINGS, source, "settings")
    rules = doc.get("rules")
    if rules is None:
        raise fail(source, "rules", "missing required table")
    if not isinstance(rules, Mapping):
        raise fail(source, "rules", "expected a table")
    unknown = sorted(set(rules) - set(RULE_NAMES))
    if unknown:
        raise fail(source, f"rules.{unknown[0]}", f"unknown rule (expected one of: {', '.join(RULE_NAMES)})")
    missing = [n for n in RULE_NAMES if n not in rules]
    if missing:
        raise fail(source, f"rules.{missing[0]}", "missing rule table (set enabled = false to turn it off)")

    def spike(name: str, extra_spec: dict | None = None) -> SpikeRule:
        path = f"rules.{name}"
        d = check_table(rules[name], {**_SPIKE, **(extra_spec or {})}, source, path)
        tiers = _tiers(d, _SPIKE_TIER, source, path, lambda t: SpikeTier(t["floor"], t["k"]))
        if tiers["critical"].floor < tiers["warning"].floor or tiers["critical"].k < tiers["warning"].k:
            raise fail(source, f"{path}.critical", "critical thresholds must not be below warning thresholds")
        return SpikeRule(
            name, d["enabled"], d["window_minutes"], d["warmup_windows"], d["baseline_windows"], d["alpha"],
            d["min_sigma"], tiers, d["cooldown_minutes"], tuple(d.get("types") or ()),
        )

    def ordered(path: str, tiers: dict[str, float]) -> None:
        if tiers["critical"] < tiers["warning"]:
            raise fail(source, f"{path}.critical", "critical threshold must not be below the warning threshold")

    d = check_table(rules["negative_share"], _SHARE, source, "rules.negative_share")
    share_tiers = _tiers(d, _SHARE_TIER, source, "rules.negative_share", lambda t: t["share"])
    ordered("rules.negative_share", share_tiers)
    share = ShareRule("negative_share", d["enabled"], d["window_minutes"], d["min_volume"], share_tiers,
                      d["cooldown_minutes"])

    d = check_table(rules["misclassification"], _COUNT, source, "rules.misclassification")
    count_tiers = _tiers(d, _COUNT_TIER, source, "rules.misclassification", lambda t: t["count"])
    ordered("rules.misclassification", count_tiers)
    mis = CountRule("misclassification", d["enabled"], d["window_minutes"], count_tiers, d["cooldown_minutes"])

    d = check_table(rules["critical_claim"], _CLAIM, source, "rules.critical_claim")
    claim_tiers = _tiers(d, _CLAIM_TIER, source, "rules.critical_claim", lambda t: t["followers"])
    ordered("rules.critical_claim", claim_tiers)
    claim = ClaimRule("critical_claim", d["enabled"], d["urgency"], claim_tiers, d["cooldown_minutes"])

    return RuleSet(
        source=source,
        buckets=Buckets(settings["bucket_seconds"]),
        negative_spike=spike("negative_spike"),
        negative_share=share,
        incident_spike=spike("incident_spike", {"types": Field(list, [], str_list)}),
        misclassification=mis,
        critical_claim=claim,
    )


def read_toml(path: str | Path | None) -> tuple[dict[str, Any], str]:
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    source = str(p)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh), source
    except FileNotFoundError:
        raise AlertConfigError(f"{source}: file not found") from None
    except OSError as exc:
        raise AlertConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AlertConfigError(f"{source}: invalid TOML: {exc}") from None


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load only the rules of an alerting TOML file (default: the shipped ``alert_rules.toml``)."""
    doc, source = read_toml(path)
    return parse_rules(doc, source)


# ------------------------------------------------------------------------------------------- evaluation


def _spike(
    rule: SpikeRule,
    rules: RuleSet,
    brand: str,
    subject: str,
    now_bucket: int,
    history: Mapping[int, WindowCounts],
    value: Callable[[WindowCounts], float],
    sample_filter: Callable[[dict], bool],
) -> Candidate | None:
    wb = rules.buckets.per_minutes(rule.window_minutes)
    start = now_bucket - wb + 1
    earlier = earlier_window_values(history, start, wb, rule.baseline_windows, value)
    if len(earlier) < max(1, rule.warmup_windows):
        return None
    current = window_sum(history, now_bucket, wb)
    observed = float(value(current))
    rule_ewma = Ewma.over(earlier, rule.alpha)
    baseline = rule_ewma.mean
    sigma = max(rule_ewma.std, rule.min_sigma)
    fired: tuple[str, float] | None = None
    for sev in SEVERITIES:
        tier = rule.tiers[sev]
        threshold = max(tier.floor, baseline + tier.k * sigma)
        if observed > threshold:
            fired = (sev, threshold)
    if fired is None:
        return None
    sev, threshold = fired
    ws, we = rules.buckets.span(now_bucket, wb)
    samples = top_samples([s for s in current.samples if sample_filter(s)], SAMPLES_PER_ALERT)
    return Candidate(rule.name, sev, brand, subject, ws, we, observed, round(baseline, 3), round(threshold, 3),
                     tuple(samples))


def evaluate(
    rules: RuleSet,
    brand: str,
    now_bucket: int,
    history: Mapping[int, WindowCounts | Mapping[str, Any]],
    event: Mapping[str, Any] | None = None,
) -> list[Candidate]:
    """Evaluate every enabled rule for ``brand`` at ``now_bucket``.

    ``history`` maps bucket index -> counts (``WindowCounts`` or its dict form) for this brand; include
    only buckets that exist (a missing bucket counts as zero, and the first present bucket marks the start
    of the brand's history for warm-up). Read at least ``rules.history_buckets`` buckets ending at
    ``now_bucket``. ``event`` is the enriched tweet being processed, if any (for ``critical_claim``).
    At most one candidate (the highest tier crossed) per rule and subject.
    """
    hist = {b: WindowCounts.from_dict(v) for b, v in history.items()}
    out: list[Candidate] = []

    r = rules.negative_spike
    if r.enabled:
        c = _spike(r, rules, brand, "negative", now_bucket, hist, lambda w: w.negative, lambda s: s.get("negative"))
        if c:
            out.append(c)

    r = rules.incident_spike
    if r.enabled:
        wb = rules.buckets.per_minutes(r.window_minutes)
        types = r.types or sorted(window_sum(hist, now_bucket, wb).incidents)
        for t in types:
            c = _spike(r, rules, brand, t, now_bucket, hist, lambda w, t=t: w.incidents.get(t, 0),
                       lambda s, t=t: t in (s.get("incidents") or ()))
            if c:
                out.append(c)

    s = rules.negative_share
    if s.enabled:
        wb = rules.buckets.per_minutes(s.window_minutes)
        cur = window_sum(hist, now_bucket, wb)
        if cur.tweets >= s.min_volume:
            share = cur.negative / cur.tweets
            fired = [sev for sev in SEVERITIES if share >= s.tiers[sev]]
            if fired:
                sev = fired[-1]
                past = WindowCounts.sum(v for b, v in hist.items() if b <= now_bucket - wb)
                baseline = round(past.negative / past.tweets, 4) if past.tweets else None
                ws, we = rules.buckets.span(now_bucket, wb)
                samples = top_samples([x for x in cur.samples if x.get("negative")], SAMPLES_PER_ALERT)
                out.append(Candidate(s.name, sev, brand, "negative", ws, we, round(share, 4), baseline,
                                     s.tiers[sev], tuple(samples)))

    m = rules.misclassification
    if m.enabled:
        wb = rules.buckets.per_minutes(m.window_minutes)
        cur = window_sum(hist, now_bucket, wb)
        fired = [sev for sev in SEVERITIES if cur.misclassified >= m.tiers[sev]]
        if fired:
            sev = fired[-1]
            ws, we = rules.buckets.span(now_bucket, wb)
            out.append(Candidate(m.name, sev, brand, "model", ws, we, float(cur.misclassified), None,
                                 float(m.tiers[sev])))

    c = rules.critical_claim
    if c.enabled and event is not None:
        cand = _claim(c, rules, brand, event)
        if cand:
            out.append(cand)
    return out


def _claim(rule: ClaimRule, rules: RuleSet, brand: str, event: Mapping[str, Any]) -> Candidate | None:
    if not event.get("is_claim") or event.get("urgency") != rule.urgency:
        return None
    followers = (event.get("author") or {}).get("followers") or 0
    fired = [sev for sev in SEVERITIES if followers >= rule.tiers[sev]]
    if not fired:
        return None
    sev = fired[-1]
    when = event.get("created_at")
    if when is None and event.get("event_time_ms") is not None:
        when = event["event_time_ms"] / 1000
    bucket = rules.buckets.bucket_of(when) if when is not None else None
    if bucket is None:
        return None
    ws, we = iso(rules.buckets.start(bucket)), iso(rules.buckets.end(bucket))
    sample = sample_from_tweet(event)
    return Candidate(rule.name, sev, brand, str(event.get("id")), ws, we, float(followers), None,
                     float(rule.tiers[sev]), (sample,))


"""Dashboard state, computed from the same count tables the alert rules read (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..alerting.rules import RuleSet
from ..alerting.windows import Ewma, WindowCounts, earlier_window_values, iso, window_sum


def spike_threshold(rules: RuleSet, history: Mapping[int, WindowCounts], now_bucket: int,
                    severity: str = "warning") -> float | None:
    """The negative-spike threshold in force now, or None while the brand is warming up."""
    rule = rules.negative_spike
    wb = rules.buckets.per_minutes(rule.window_minutes)
    earlier = earlier_window_values(history, now_bucket - wb + 1, wb, rule.baseline_windows, lambda w: w.negative)
    if len(earlier) < max(1, rule.warmup_windows):
        return None
    ewma = Ewma.over(earlier, rule.alpha)
    tier = rule.tiers[severity]
    return round(max(tier.floor, ewma.mean + tier.k * max(ewma.std, rule.min_sigma)), 2)


def brand_state(rules: RuleSet, brand: str, history: Mapping[int, WindowCounts], now_bucket: int,
                series_buckets: int = 60) -> dict[str, Any]:
    """Per-minute series and the current window against the rule thresholds, for one brand."""
    series = []
    for b in range(now_bucket - series_buckets + 1, now_bucket + 1):
        w = history.get(b)
        if w is not None:
            series.append({"t": iso(rules.buckets.start(b)), "tweets": w.tweets, "negative": w.negative,
                           "claims": w.claims, "misclassified": w.misclassified})
    spike_wb = rules.buckets.per_minutes(rules.negative_spike.window_minutes)
    share_rule = rules.negative_share
    current = window_sum(history, now_bucket, spike_wb)
    share_window = window_sum(history, now_bucket, rules.buckets.per_minutes(share_rule.window_minutes))
    share = share_window.negative / share_window.tweets if share_window.tweets else 0.0
    return {
        "brand": brand,
        "series": series,
        "window": {
            "minutes": rules.negative_spike.window_minutes,
            "tweets": current.tweets,
            "negative": current.negative,
            "negative_threshold": spike_threshold(rules, history, now_bucket),
            "negative_share": round(share, 3),
            "share_threshold": share_rule.tiers["warning"],
            "share_min_volume": share_rule.min_volume,
            "incidents": dict(sorted(current.incidents.items(), key=lambda kv: -kv[1])),
            "misclassified": current.misclassified,
        },
    }

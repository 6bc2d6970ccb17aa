"""Dashboard state, computed from the alert engine's own per-brand state (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..alerting.engine import AlertEngine
from ..alerting.windows import iso

WINDOW_MINUTES = 60


def brand_state(engine: AlertEngine, brand: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """Per-minute series of the last hour (final buckets and those still open) and the hour against the
    negative-spike threshold, for one brand."""
    seconds = engine.rules.buckets.seconds
    buckets: dict[int, dict[str, Any]] = {int(k): v for k, v in (state.get("minutes") or {}).items()}
    for k, v in (state.get("open") or {}).items():
        buckets[int(k)] = v
    last = max(buckets, default=0)
    span = max(1, WINDOW_MINUTES * 60 // seconds)
    series, tweets, negative, misclassified = [], 0, 0, 0
    incidents: dict[str, int] = {}
    for b in range(last - span + 1, last + 1):
        v = buckets.get(b)
        if v is None:
            continue
        series.append({"t": iso(b * seconds), "tweets": v["n"], "negative": v["neg"], "misclassified": v["mis"]})
        tweets += v["n"]
        negative += v["neg"]
        misclassified += v["mis"]
        for t, n in v["inc"].items():
            incidents[t] = incidents.get(t, 0) + n
    thr = engine.negative_threshold(dict(state))
    return {
        "brand": brand,
        "series": series,
        "alerts_open": sorted(k for k in (state.get("alerts") or {})),
        "window": {
            "minutes": WINDOW_MINUTES,
            "tweets": tweets,
            "negative": negative,
            "negative_threshold": None if thr is None else round(thr[0], 2),
            "warming": True if thr is None else thr[1],
            "negative_share": round(negative / tweets, 3) if tweets else 0.0,
            "incidents": dict(sorted(incidents.items(), key=lambda kv: -kv[1])),
            "misclassified": misclassified,
        },
    }

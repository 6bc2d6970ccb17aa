"""Brand-relative spike detection: a robust hourly baseline and the level of trailing windows against it.

Pure arithmetic, no state: :mod:`.engine` keeps the counts and calls :func:`spike_level` once per final bucket.

The baseline mirrors how a comms team reads a brand's traffic: the median and MAD of its hourly counts over
the last days (zero hours included), so a storm lasting hours does not become "normal" (it moves a 7-day
median little) and a small brand gets thresholds of its own size. A trailing window of ``w`` minutes is
projected to an hourly rate (``count * 60 / w``) and compared with ``max(floor, median + k * MAD)``; short
windows catch a storm's first minutes, the hour-long one a slow build-up, and ``min_count`` keeps a short
window from firing on a handful of tweets. A window shorter than the longest must also be unlikely at a rate
between the median and the threshold (``test_at``; Poisson tail probability at most ``significance``): 7
negatives in 15 minutes at a brand whose threshold is 25 an hour is a burst that chance explains, not a storm.
Every window must also be unlikely at the median rate itself: a calm brand's hour is checked 60 times an hour
by the sliding windows, and its MAD alone (about two thirds of a Poisson standard deviation) lets noise through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SEVERITIES = ("warning", "critical")


@dataclass(frozen=True, slots=True)
class Tier:
    floor: float  # per hour: never fire below this rate, whatever the baseline
    k: float  # MADs above the median


@dataclass(frozen=True, slots=True)
class SpikeParams:
    windows_minutes: tuple[int, ...]
    min_count: int
    baseline_hours: int
    warmup_hours: int
    min_mad: float
    tiers: Mapping[str, Tier]
    warmup_floor: float = 0.0  # per hour: while warming up, no tier fires below this (0 = silent until warm)
    warmup_factor: float = 3.0  # while warming up, a tier also needs this multiple of the rate seen so far
    significance: float = 1.0  # short windows: max Poisson tail probability of the count at the test rate
    test_at: float = 0.5  # test rate = median + test_at * (threshold - median)


@dataclass(frozen=True, slots=True)
class Level:
    """The highest tier crossed (or ``None``), with the window that crossed it and the figures behind it."""

    severity: str | None
    window_minutes: int
    count: int
    rate: float  # per hour
    threshold: float  # per hour, of the reported tier (warning's when nothing fired)
    baseline: float  # hourly median


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if not n:
        return 0.0
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    """Median and (unscaled) median absolute deviation."""
    med = median(values)
    return med, median([abs(v - med) for v in values])


def poisson_tail(count: int, mean: float) -> float:
    """P(X >= count) for X ~ Poisson(mean), summed in log space (exact enough for alerting)."""
    if count <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    head = sum(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(count))
    return max(0.0, 1.0 - head)


def thresholds(params: SpikeParams, hourly: Sequence[float]) -> tuple[float, dict[str, float]]:
    """(baseline median, per-hour threshold of each tier) from the brand's complete hours."""
    med, mad = median_mad(hourly)
    mad = max(mad, params.min_mad)
    return med, {sev: max(t.floor, med + t.k * mad) for sev, t in params.tiers.items()}


def spike_level(params: SpikeParams, trailing: Mapping[int, int], hourly: Sequence[float],
                seen_rate: float | None = None) -> Level | None:
    """Level of the trailing windows (``window minutes -> count``) against the hourly history.

    While the brand has fewer than ``warmup_hours`` complete hours of history, a tier needs both
    ``warmup_floor`` and ``warmup_factor`` times ``seen_rate`` (the brand's hourly rate before the window,
    ``None`` when too little was seen: silent); critical needs twice that. A new brand's first big storm
    still pages, its ordinary traffic does not.
    """
    warming = len(hourly) < params.warmup_hours
    if warming and (not params.warmup_floor or seen_rate is None):
        return None
    med, limits = thresholds(params, hourly)
    if warming:  # the usual rate is what was seen so far, not the median of (too few) complete hours
        med = seen_rate or 0.0
        start = max(params.warmup_floor, params.warmup_factor * med)
        limits = {sev: max(v, start * (2 if sev == "critical" else 1)) for sev, v in limits.items()}
    best: Level | None = None
    for w in params.windows_minutes:
        count = int(trailing.get(w, 0))
        rate = count * 60.0 / w
        if count < params.min_count:
            continue
        if poisson_tail(count, max(med, 1.0) * w / 60.0) > params.significance:
            continue  # ordinary for this brand: its own rate gives this count often enough
        short = w < params.windows_minutes[-1]
        for sev in SEVERITIES:
            test_rate = med + params.test_at * (limits[sev] - med)
            if short and poisson_tail(count, test_rate * w / 60.0) > params.significance:
                continue  # a burst that chance explains at that rate
            if rate > limits[sev] and (best is None or _rank(sev) > _rank(best.severity)
                                        or (_rank(sev) == _rank(best.severity) and rate > best.rate)):
                best = Level(sev, w, count, rate, limits[sev], med)
    if best is None:
        w = params.windows_minutes[-1]
        count = int(trailing.get(w, 0))
        return Level(None, w, count, count * 60.0 / w, limits["warning"], med)
    return best


def _rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 0

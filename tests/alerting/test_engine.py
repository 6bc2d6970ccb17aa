"""The event-time alert engine, driven like Kafka Streams' TopologyTestDriver: events in, candidates out.

Traffic is synthetic and deterministic: a brand's calm hours (a few negatives an hour), then a storm.
"""

from __future__ import annotations

import dataclasses
import math
import random
import zlib

import pytest

from stream_app.alerting import AlertEngine, load_rules
from stream_app.alerting.detect import SpikeParams, Tier, poisson_tail, spike_level

RULES = load_rules()
HOUR = 3_600_000
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def tweet(i: int, at_ms: int, *, negative: bool = False, incident: str | None = None, brand: str = "acme",
          claim: bool = False, followers: int = 100) -> dict:
    return {"id": f"t{i}", "text": f"tweet {i}", "brand": brand, "event_time_ms": at_ms,
            "author": {"handle": f"u{i}", "followers": followers},
            "sentiment": {"label": "negative" if negative else "neutral",
                          "probs": {"negative": 0.9 if negative else 0.1}},
            "is_claim": claim, "urgency": "critical" if claim else "low",
            "incident": incident or "none", "topics": ["general"]}  # as the enricher writes "no incident"


def calm(hours: int, start_ms: int = T0, per_hour: int = 30, negatives: int = 3, seed: int = 1) -> list[dict]:
    """Steady traffic: ``per_hour`` tweets an hour, Poisson(``negatives``) of them negative (some with incidents)."""
    rng = random.Random(seed)
    out = []
    for h in range(hours):
        n_neg = poisson(rng, negatives)
        for j in range(max(per_hour, n_neg)):
            at = start_ms + h * HOUR + rng.randrange(HOUR)
            neg = j < n_neg
            out.append(tweet(len(out) + seed * 1_000_000, at, negative=neg,
                             incident=("delay" if neg and j == 0 else None)))
    return sorted(out, key=lambda t: t["event_time_ms"])


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: real traffic varies from hour to hour."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def storm(n: int, start_ms: int, minutes: int, incident: str | None = "cancellation", first_id: int = 5_000_000):
    return [tweet(first_id + i, start_ms + i * minutes * 60_000 // n, negative=True, incident=incident)
            for i in range(n)]


def run(events: list[dict], rules=RULES, sources: int = 1, partition=None) -> list:
    """Feed events in the given order (a single source must be in event-time order, or its tweets are
    late); flush at the end (a finite replay)."""
    engine = AlertEngine(rules, expected_sources=sources)
    states: dict = {}
    out = []
    for ev in events:
        src = "-" if partition is None else str(partition(ev))
        states[ev["brand"]], res = engine.ingest(states.get(ev["brand"]), ev["brand"], ev, source=src)
        out += res.candidates
    for brand, st in states.items():
        out += engine.flush(st, brand)
    return out


def keys(cands) -> list[tuple]:
    return [(c.dedup_key, c.severity, c.status) for c in cands]


def day_then_storm(n: int = 120, minutes: int = 20) -> list[dict]:
    """A day and a half of calm, a storm, then calm again (in event-time order)."""
    return calm(30) + storm(n, T0 + 30 * HOUR + 5 * 60_000, minutes) + calm(4, T0 + 31 * HOUR, seed=2)


# ------------------------------------------------------------------------------------------ detection


def test_calm_days_raise_nothing():
    assert [c for c in run(calm(72)) if c.status == "firing"] == []


def test_storm_fires_once_escalates_and_resolves():
    out = run(day_then_storm())
    spikes = [c for c in out if c.rule == "negative_spike"]
    reasons = [c.reason for c in spikes]
    assert reasons in (["new", "resolved"], ["new", "escalation", "resolved"]), keys(spikes)
    assert spikes[-2].severity == "critical", "120 negatives in 20 min at a brand used to 3 an hour"
    new = spikes[0]
    storm_start = T0 + 30 * HOUR + 5 * 60_000
    assert new.observed > new.threshold >= 12 and new.baseline is not None and new.baseline < 10
    from stream_app.alerting.windows import to_epoch

    assert 0 < to_epoch(new.window_end) * 1000 - storm_start <= 10 * 60_000, "fires within minutes"
    assert len({c.dedup_key for c in spikes if c.status == "firing"}) == 1, "one incident, one dedup key"
    assert spikes[-1].dedup_key.endswith(":resolved") and spikes[-1].samples == ()
    assert all("tweet" in s["text"] for s in new.samples) and 1 <= len(new.samples) <= 3


def test_cancellation_storm_is_typed_and_fallback_never_drives_incident_spike():
    out = run(day_then_storm())
    assert ("incident_spike", "cancellation") in {(c.rule, c.subject) for c in out}
    fallback = calm(30) + storm(150, T0 + 30 * HOUR, 20, incident="customer_service")
    assert "incident_spike" not in {c.rule for c in run(fallback)}, "an unspecified complaint is not an incident"


def test_thresholds_follow_the_brand():
    small = calm(30, per_hour=4, negatives=1) + storm(40, T0 + 30 * HOUR, 45)
    small_alerts = [c for c in run(small) if c.rule == "negative_spike" and c.status == "firing"]
    assert "critical" in {c.severity for c in small_alerts}, "a small brand's storm can be critical"
    # a busy brand (60 negatives an hour): the same storm on top of its traffic is no critical event
    busy = calm(30, per_hour=150, negatives=60) + storm(40, T0 + 30 * HOUR, 45, incident=None)
    busy_alerts = [c for c in run(sorted(busy, key=lambda e: e["event_time_ms"]))
                   if c.rule == "negative_spike" and c.status == "firing" and c.window_end >= "2024-05-02"]
    assert all(c.threshold > 60 for c in busy_alerts) and "critical" not in {c.severity for c in busy_alerts}


def test_long_storm_keeps_one_alert_and_renotifies_slowly():
    hours = 10
    events = calm(30) + storm(60 * hours, T0 + 30 * HOUR, 60 * hours, incident=None)
    spikes = [c for c in run(events) if c.rule == "negative_spike" and c.status == "firing"]
    repeats = [c for c in spikes if c.reason == "repeat"]
    renotify = RULES.negative_spike.renotify_minutes / 60
    assert len(repeats) == int(hours // renotify), keys(spikes)  # the storm does not become "normal"
    assert len([c for c in spikes if c.reason == "new"]) == 1


def test_warming_brand_only_pages_for_a_big_storm():
    assert run(storm(100, T0, 10, incident=None)) == [], "nothing seen before: nothing to compare with"
    busy_start = calm(1, per_hour=3000, negatives=300)  # a new brand that is simply busy: no alert
    assert [c for c in run(busy_start) if c.status == "firing"] == []
    out = run(calm(1, per_hour=600, negatives=60) + storm(400, T0 + HOUR, 10, incident=None))
    fired = [c for c in out if c.status == "firing"]
    assert {c.rule for c in fired} == {"negative_spike"} and fired[-1].severity == "critical", keys(fired)


# ----------------------------------------------------------------------------------- event time, order


def partition_of(ev: dict) -> int:
    return zlib.crc32(ev["id"].encode()) % 4


def fast_replay_order(events: list[dict], chunk: int) -> list[dict]:
    """Four partitions read round-robin in large chunks: one partition runs hours ahead of another."""
    parts = [[e for e in events if partition_of(e) == p] for p in range(4)]
    out: list[dict] = []
    while any(parts):
        for p in range(4):
            out += parts[p][:chunk * (p + 1)]
            parts[p] = parts[p][chunk * (p + 1):]
    return out


@pytest.mark.parametrize("chunk", [7, 50, 400])
def test_fast_replay_gives_the_same_alerts_as_a_paced_stream(chunk):
    events = sorted(calm(40, seed=3) + storm(150, T0 + 31 * HOUR, 25) + storm(90, T0 + 36 * HOUR, 30, first_id=7e6),
                    key=lambda e: e["event_time_ms"])
    paced = run(events, sources=4, partition=partition_of)
    fast = run(fast_replay_order(events, chunk), sources=4, partition=partition_of)
    assert keys(paced) and keys(fast) == keys(paced)
    assert [c.observed for c in fast] == [c.observed for c in paced]


def test_redelivered_tweets_count_once():
    events = day_then_storm()
    twice = [e for ev in events for e in (ev, ev)]
    engine = AlertEngine(RULES)
    st, dup = None, 0
    for ev in twice:
        st, res = engine.ingest(st, "acme", ev)
        dup += res.duplicates + res.late
    assert dup == len(events)
    assert keys(run(twice)) == keys(run(events))


def test_late_tweets_are_counted_as_late_not_lost_silently():
    rules = dataclasses.replace(RULES, allowed_lateness_seconds=60)
    engine = AlertEngine(rules)
    st, _ = engine.ingest(None, "acme", tweet(1, T0 + 10 * 60_000))
    st, res = engine.ingest(st, "acme", tweet(2, T0 + 9 * 60_000 + 30_000))  # within lateness: counted
    assert res.counted == 1
    st, res = engine.ingest(st, "acme", tweet(3, T0 + 20 * 60_000))
    st, res = engine.ingest(st, "acme", tweet(4, T0 + 10 * 60_000))  # its bucket is final by now
    assert res.late == 1 and res.counted == 0


def test_state_is_json_and_survives_a_restart_mid_stream():
    import orjson

    events = day_then_storm()
    engine = AlertEngine(RULES)
    st, out = None, []
    for i, ev in enumerate(events):
        if i % 500 == 0 and st is not None:
            st = orjson.loads(orjson.dumps(st))  # what a changelog restore gives back
        st, res = engine.ingest(st, "acme", ev)
        out += res.candidates
    out += engine.flush(st, "acme")
    assert keys(out) == keys(run(events))


# ---------------------------------------------------------------------------------------- other rules


def test_critical_claims_are_grouped_per_interval():
    start = T0 + 2 * HOUR
    claims = [tweet(100 + i, start + i * 60_000, negative=True, claim=True, followers=200_000 if i == 3 else 20_000)
              for i in range(20)]
    out = [c for c in run(sorted(calm(3) + claims, key=lambda e: e["event_time_ms"])) if c.rule == "critical_claim"]
    assert RULES.critical_claim.group_interval_minutes >= 20
    # the first claim goes out with its minute; the 19 of the next 19 minutes wait for the interval
    assert [c.observed for c in out] == [1, 19], [(c.window_start, c.observed) for c in out]
    first = out[0]
    assert first.observed == 1 and first.severity == "warning"
    assert out[1].severity == "critical" and len(out[1].samples) <= RULES.critical_claim.max_listed
    assert out[1].samples[0]["followers"] == 200_000, "the widest reach is listed first"


def test_misclassification_reports():
    engine = AlertEngine(RULES)

    def reports(n: int, reporters: int = 3) -> list:
        st, out = None, []
        for i in range(n):
            rep = {"id": f"r{i}", "event_time_ms": T0 + i * 60_000, "text": f"tweet {i}", "predicted_label": "positive",
                   "correct_label": "negative", "reporter": f"ana{i % reporters}"}
            st, res = engine.ingest(st, "acme", rep, kind="misclassification")
            out += res.candidates
        return out + engine.flush(st, "acme")

    assert [c for c in reports(2) if c.status == "firing"] == []
    assert [c for c in reports(3, reporters=1) if c.status == "firing"] == [], "one person is one voice"
    [alert] = [c for c in reports(3) if c.status == "firing"]
    assert alert.rule == "misclassification" and alert.observed == 3
    assert alert.severity == "critical" and alert.team == "data_science", "the seeds' matrix: 3 in 5 min"
    assert {s["report"]["correct"] for s in alert.samples} == {"negative"}


# ------------------------------------------------------------------------------------------- detector


def test_poisson_tail():
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(1, 0.0) == 0.0
    assert abs(poisson_tail(3, 2.0) - 0.3233235838) < 1e-9


def test_short_window_burst_needs_significance():
    p = SpikeParams((15, 60), 6, 168, 0, 1.0, {"warning": Tier(12, 3), "critical": Tier(30, 8)},
                    significance=0.001, test_at=0.5)
    hourly = [10, 12, 8, 9, 11, 10, 14, 6] * 3  # median 10, MAD 2 -> warning threshold 16 an hour
    assert spike_level(p, {15: 7, 60: 12}, hourly).severity is None  # 28/h for 15 min: a burst
    assert spike_level(p, {15: 12, 60: 12}, hourly).severity == "warning"  # 48/h: unlikely even at 13/h
    assert spike_level(p, {15: 3, 60: 17}, hourly).severity is None  # above the MADs, but 17 at 10/h is chance
    assert spike_level(p, {15: 5, 60: 24}, hourly).severity == "warning"  # a slow hour-long build-up


def test_negatives_the_model_cannot_read_are_not_counted():
    """A French storm scored by an English-only model: labels marked unreliable never drive negative_spike."""
    unreliable = [t | {"sentiment": t["sentiment"] | {"reliable": False}} for t in storm(150, T0 + 30 * HOUR, 20)]
    out = run(calm(30) + unreliable)
    assert "negative_spike" not in {c.rule for c in out}
    assert "incident_spike" in {c.rule for c in out}, "incidents come from the language-aware rule tables"


def test_no_incident_and_the_general_topic_are_not_signals():
    """A storm of complaints with no incident type ("none") is a negative spike, never an incident spike."""
    out = run(calm(30) + storm(150, T0 + 30 * HOUR, 20, incident=None))
    assert "negative_spike" in {c.rule for c in out}
    assert all(c.subject != "none" for c in out) and "incident_spike" not in {c.rule for c in out}

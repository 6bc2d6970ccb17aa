"""The daily summary's pure parts (stream_app/alerting/summary.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from stream_app.alerting.health import LATENCY_EDGES_MS
from stream_app.alerting.summary import SummaryConfig, Tally, due, expired, merge, render

PARIS = SummaryConfig(True, datetime.strptime("08:00", "%H:%M").time(), "Europe/Paris")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_summary_covers_the_24_hours_to_its_local_time():
    # 06:59 UTC = 07:59 in Paris (winter): still in the summary sent on that day at 08:00
    assert PARIS.day_of(epoch("2026-11-30T06:59:00")) == "2026-11-30"
    assert PARIS.day_of(epoch("2026-11-30T07:01:00")) == "2026-12-01"
    assert due(PARIS, epoch("2026-11-30T06:59:00"), {}) == ("2026-11-29", ["comms", "data_science", "devops"])
    assert due(PARIS, epoch("2026-11-30T07:00:30"), {}) == ("2026-11-30", ["comms", "data_science", "devops"])
    assert due(PARIS, epoch("2026-11-30T07:00:30"), {"2026-11-30": ["comms", "devops"]}) == (
        "2026-11-30", ["data_science"])
    assert due(PARIS, epoch("2026-11-30T12:00:00"), {"2026-11-30": list(PARIS.teams)}) is None, "once per team"
    assert expired(PARIS, epoch("2026-11-30T12:00:00"), ["2026-11-20", "2026-11-29"]) == ["2026-11-20"]


def test_partials_from_several_workers_add_up_and_render():
    a, b = Tally(PARIS), Tally(PARIS)
    t = epoch("2026-11-30T06:00:00")
    for i in range(10):
        a.tweet(t, "united", negative=i < 4, incident=i < 2)
    b.tweet(t, "united", negative=True, incident=False)
    b.tweet(t, "freebox", negative=False, incident=False)
    a.alert(t, "united")
    a.batch(t, dead=2, latencies_s=[0.05] * 19 + [2.0])
    b.batch(t, feedback=3)
    total = None
    for part in (a.drain(t), b.drain(t)):
        total = merge(total, part["2026-11-30"])
    assert a.drain(t) == {"2026-11-30": {"brands": {}, "dead": 0, "feedback": 0, "latency": {}}}, "drained"
    assert total["brands"]["united"] == {"tweets": 11, "negative": 5, "incidents": 2, "alerts": 1}
    r = render("2026-11-30", "comms", total, at="08:00 Europe/Paris")
    assert r.id == "summary:2026-11-30:comms" and "12 tweets, 1 alerts" in r.subject
    assert r.data["brands"]["united"]["negative_share"] == round(5 / 11, 4) and r.data["dead_letters"] == 2
    assert r.data["feedback"] == 3 and r.data["latency_p95_ms"] in LATENCY_EDGES_MS
    assert 50 <= r.data["latency_p95_ms"] <= 56
    assert "united" in r.text and "45.5%" in r.text and "<td>united</td>" in r.html

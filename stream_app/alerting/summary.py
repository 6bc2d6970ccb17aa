"""The daily summary per team (e-mail and webhook): per brand tweets, negative share, incidents and alerts
sent; dead letters, latency P95 and feedback received, over the 24 hours that end at the configured local
time (``at``, e.g. 08:00 Europe/Paris); a summary is named by the day it ends on.

Each worker tallies what it saw (:class:`Tally`, per day of the summary's time zone) and drains it every
minute as a partial; one agent merges the partials into a table keyed by day (:func:`merge`) and, once the
configured local time has passed, sends the previous day's summary to each team once (:func:`due`). Pure
functions over JSON-able dicts; the wiring is in :mod:`.agents`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._schema import Field, check_table, fail, one_of, str_list
from .health import LATENCY_EDGES_MS, latency_bin, p95
from .rules import TEAMS

KEEP_DAYS = 7


@dataclass(frozen=True, slots=True)
class SummaryConfig:
    enabled: bool = False
    at: dtime = dtime(8, 0)
    timezone: str = "UTC"
    teams: tuple[str, ...] = TEAMS
    webhooks: tuple[str, ...] = ()  # env-expanded; every team's summary goes to them too

    def _shifted(self, epoch: float) -> datetime:
        local = datetime.fromtimestamp(epoch, ZoneInfo(self.timezone)).replace(tzinfo=None)
        return local - timedelta(hours=self.at.hour, minutes=self.at.minute)

    def day_of(self, epoch: float) -> str:
        """The summary an event at ``epoch`` belongs to: the 24 hours ending at ``at`` on that day."""
        return (self._shifted(epoch).date() + timedelta(days=1)).isoformat()

    def last_due(self, epoch: float) -> str:
        """The latest summary whose 24 hours have ended at ``epoch``."""
        return self._shifted(epoch).date().isoformat()


def parse_summary(doc: Mapping[str, Any], source: str, expand: Any) -> SummaryConfig:
    """``[summary]``: ``at`` (HH:MM local), ``timezone``, ``teams``, ``webhook`` (recipients, ``env:VAR`` ok)."""
    spec = {"enabled": Field(bool, True), "at": Field(str, "08:00"), "timezone": Field(str, "UTC"),
            "teams": Field(list, list(TEAMS), str_list), "webhook": Field(list, [], str_list)}
    if "summary" not in doc:
        return SummaryConfig()
    d = check_table(doc["summary"], spec, source, "summary")
    try:
        at = dtime.fromisoformat(d["at"])
    except ValueError:
        raise fail(source, "summary.at", f"expected HH:MM, got {d['at']!r}") from None
    try:
        ZoneInfo(d["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(source, "summary.timezone", f"unknown time zone {d['timezone']!r}") from None
    bad = [problem for t in d["teams"] if (problem := one_of(TEAMS, "team")(t))]
    if bad:
        raise fail(source, "summary.teams", bad[0])
    return SummaryConfig(d["enabled"], at, d["timezone"], tuple(d["teams"]),
                         expand(d["webhook"], "webhook", "summary.webhook"))


@dataclass
class Tally:
    """What one worker saw since the last drain, per summary (:meth:`SummaryConfig.day_of`)."""

    config: SummaryConfig
    days: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _day(self, now: float) -> dict[str, Any]:
        return self.days.setdefault(self.config.day_of(now), {"brands": {}, "dead": 0, "feedback": 0,
                                                              "latency": {}})

    def tweet(self, now: float, brand: str, negative: bool, incident: bool) -> None:
        b = self._day(now)["brands"].setdefault(brand, {"tweets": 0, "negative": 0, "incidents": 0, "alerts": 0})
        b["tweets"] += 1
        b["negative"] += int(negative)
        b["incidents"] += int(incident)

    def alert(self, now: float, brand: str) -> None:
        b = self._day(now)["brands"].setdefault(brand, {"tweets": 0, "negative": 0, "incidents": 0, "alerts": 0})
        b["alerts"] += 1

    def batch(self, now: float, dead: int = 0, latencies_s: list[float] | tuple = (), feedback: int = 0) -> None:
        d = self._day(now)
        d["dead"] += dead
        d["feedback"] += feedback
        for s in latencies_s:
            i = str(latency_bin(s))
            d["latency"][i] = d["latency"].get(i, 0) + 1

    def drain(self, now: float) -> dict[str, dict[str, Any]]:
        """The partials since the last drain; always names the current summary, so a day the worker ran
        through gets its summary even with no tweet (a silent day is news), and a day it did not does not."""
        self._day(now)
        out, self.days = self.days, {}
        return out


def merge(total: Mapping[str, Any] | None, part: Mapping[str, Any]) -> dict[str, Any]:
    """One day's totals with a partial added (both JSON-able; ``total`` is not modified)."""
    t = {"brands": {k: dict(v) for k, v in (total or {}).get("brands", {}).items()},
         "dead": (total or {}).get("dead", 0), "feedback": (total or {}).get("feedback", 0),
         "latency": dict((total or {}).get("latency", {}))}
    for brand, figures in part.get("brands", {}).items():
        b = t["brands"].setdefault(brand, {"tweets": 0, "negative": 0, "incidents": 0, "alerts": 0})
        for k, v in figures.items():
            b[k] = b.get(k, 0) + int(v)
    t["dead"] += int(part.get("dead", 0))
    t["feedback"] += int(part.get("feedback", 0))
    for i, n in part.get("latency", {}).items():
        t["latency"][i] = t["latency"].get(i, 0) + int(n)
    return t


def due(config: SummaryConfig, now: float, sent: Mapping[str, list[str]]) -> tuple[str, list[str]] | None:
    """(day, teams): the summary of the 24 hours that ended at the last ``at``, for the teams not sent yet."""
    day = config.last_due(now)
    teams = [t for t in config.teams if t not in sent.get(day, ())]
    return (day, teams) if teams else None


def expired(config: SummaryConfig, now: float, days: list[str]) -> list[str]:
    """Days older than :data:`KEEP_DAYS` (their totals and sent marks can go)."""
    oldest = (date.fromisoformat(config.last_due(now)) - timedelta(days=KEEP_DAYS)).isoformat()
    return [d for d in days if d < oldest]


@dataclass(frozen=True, slots=True)
class Report:
    """A rendered summary: what the notifiers send (no tweet text, so nothing to defang but brand names)."""

    id: str
    subject: str
    text: str
    html: str
    data: dict[str, Any]


def render(day: str, team: str, total: Mapping[str, Any] | None, escape: Any = lambda s: s, at: str = "") -> Report:
    """The summary of the 24 hours to ``day`` ``at`` for ``team``; ``escape`` makes brand names safe."""
    total = total or {}
    brands = sorted(total.get("brands", {}).items(), key=lambda kv: -kv[1].get("tweets", 0))
    lat, n_lat = p95([total.get("latency", {}).get(str(i), 0) for i in range(len(LATENCY_EDGES_MS))])
    tweets = sum(b.get("tweets", 0) for _, b in brands)
    rows = [(escape(name), b.get("tweets", 0), (b.get("negative", 0) / b["tweets"]) if b.get("tweets") else 0.0,
             b.get("incidents", 0), b.get("alerts", 0)) for name, b in brands]
    subject = (f"[badbuzz] Daily summary to {day} {at} ({team}): {tweets} tweets, {sum(r[4] for r in rows)} "
               "alerts")
    lines = [subject, "", f"{'brand':24} {'tweets':>8} {'negative':>9} {'incidents':>9} {'alerts':>7}"]
    lines += [f"{n[:24]:24} {t:>8} {s:>9.1%} {i:>9} {a:>7}" for n, t, s, i, a in rows]
    lines += ["", f"Dead letters: {total.get('dead', 0)}   Feedback received: {total.get('feedback', 0)}   "
                  f"Latency P95: {f'{lat:.0f} ms' if n_lat else 'n/a'} ({n_lat} tweets)"]
    e = html.escape
    cells = "".join(f"<tr><td>{e(n)}</td><td>{t}</td><td>{s:.1%}</td><td>{i}</td><td>{a}</td></tr>"
                    for n, t, s, i, a in rows)
    body = (f"<html><body><h2>{e(subject)}</h2><table><tr><th>brand</th><th>tweets</th><th>negative</th>"
            f"<th>incidents</th><th>alerts</th></tr>{cells}</table><p>{e(lines[-1])}</p></body></html>")
    data = {"day": day, "to": at, "team": team,
            "brands": {n: {"tweets": t, "negative_share": round(s, 4), "incidents": i, "alerts": a}
                       for n, t, s, i, a in rows},
            "dead_letters": total.get("dead", 0), "feedback": total.get("feedback", 0),
            "latency_p95_ms": lat if n_lat else None}
    return Report(f"summary:{day}:{team}", subject, "\n".join(lines) + "\n", body, data)

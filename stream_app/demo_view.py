"""The demo's live terminal view (rich): per-brand counts and negative share per minute, and the alerts.

Pure state + rendering, fed by ``stream_app.demo``: a compact table that is redrawn in place, instead of one
line per tweet scrolling the alerts away.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .kpi import incident_of

MINUTES = 5  # minute columns shown, the newest last
ALERT_ROWS = 6


class DemoView:
    """What has flowed so far: enriched tweets by brand and event-time minute, and the alerts."""

    def __init__(self) -> None:
        self.tweets = 0
        self.negative = 0
        self.per_minute: dict[str, dict[int, list[int]]] = defaultdict(dict)  # brand -> minute -> [n, negative]
        self.incidents: dict[str, Counter[str]] = defaultdict(Counter)
        self.alerts: list[dict[str, Any]] = []
        self.recent_alerts: deque[dict[str, Any]] = deque(maxlen=ALERT_ROWS)
        self.last_minute = 0
        self.status = "starting"

    def add_tweet(self, event: dict[str, Any]) -> None:
        brand = event.get("brand") or "-"
        minute = int(event.get("event_time_ms", 0)) // 60_000
        negative = event["sentiment"]["label"] == "negative"
        cell = self.per_minute[brand].setdefault(minute, [0, 0])
        cell[0] += 1
        cell[1] += negative
        self.tweets += 1
        self.negative += negative
        self.last_minute = max(self.last_minute, minute)
        if incident := incident_of(event):
            self.incidents[brand][incident] += 1

    def add_alert(self, data: dict[str, Any]) -> None:
        self.alerts.append(data)
        self.recent_alerts.append(data)

    def render(self) -> Group:
        minutes = [self.last_minute - i for i in range(MINUTES - 1, -1, -1)]
        table = Table(title=f"badbuzz demo: {self.tweets} tweets, {self.negative} negative — {self.status}",
                      caption="per minute of event time: tweets and negative share", caption_justify="left",
                      title_justify="left", expand=False, box=box.SIMPLE_HEAD)
        table.add_column("brand", no_wrap=True, max_width=14, overflow="ellipsis")
        table.add_column("tweets", justify="right", no_wrap=True)
        for m in minutes:
            offset = m - self.last_minute
            table.add_column(f"{offset:+d} min" if offset else "this min", justify="right", no_wrap=True)
        table.add_column("top incident", no_wrap=True, max_width=24, overflow="ellipsis")
        for brand in sorted(self.per_minute):
            cells = self.per_minute[brand]
            row = [brand, str(sum(c[0] for c in cells.values()))]
            for m in minutes:
                n, neg = cells.get(m, (0, 0))
                row.append(_share(n, neg))
            row.append(" ".join(f"{k} {v}" for k, v in self.incidents[brand].most_common(1)))
            table.add_row(*row)
        alerts = Table(title="alerts (latest last)", title_justify="left", expand=False, box=box.SIMPLE_HEAD)
        for col in ("severity", "rule", "brand", "subject", "reason", "observed"):
            alerts.add_column(col)
        for a in self.recent_alerts:
            style = {"critical": "bold red", "warning": "yellow"}.get(a.get("severity", ""), "")
            alerts.add_row(Text(a.get("severity", ""), style=style), a.get("rule", ""), a.get("brand", ""),
                           str(a.get("subject") or ""), a.get("reason", ""), f"{a.get('observed', '')}")
        return Group(table, alerts if self.recent_alerts else Text("no alert yet"))


def _share(n: int, negative: int) -> Text:
    """'n neg%' for one minute, red from a third negative on."""
    if not n:
        return Text("·", style="dim")
    share = negative / n
    return Text(f"{n} {share:.0%}", style="bold red" if share >= 1 / 3 else ("yellow" if share >= 0.15 else ""))

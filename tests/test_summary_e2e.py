"""The daily summary through a real worker (issue #20): each team gets one e-mail, the webhook one post per
team, with the figures of the 24 hours that just ended. The summary time is set a minute or two ahead."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from stream_app.alerting.rules import DEFAULT_RULES_PATH
from stream_app.kafkaio import produce_messages

pytestmark = pytest.mark.integration
MAILS = {"comms": "comms@example.com", "data_science": "ds@example.com", "devops": "devops@example.com"}


def rules_file(tmp_path: Path, at: datetime) -> Path:
    shipped = DEFAULT_RULES_PATH.read_text()
    start = shipped.index("[summary]")
    end = shipped.index("[policy]")
    summary = f'[summary]\nat = "{at:%H:%M}"\ntimezone = "UTC"\nwebhook = ["env:BADBUZZ_SUMMARY_WEBHOOKS"]\n\n'
    path = tmp_path / "alert_rules.toml"
    path.write_text(shipped[:start] + summary + shipped[end:])
    return path


def test_daily_summary_reaches_each_team_once(broker, start_worker, smtp_server, webhook_server, tmp_path):
    now = datetime.now(UTC)
    at = (now + timedelta(seconds=50)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    if at.date() != now.date():
        pytest.skip("too close to midnight UTC for a same-day summary")
    env = smtp_server.env() | {
        "BADBUZZ_ALERT_RULES": str(rules_file(tmp_path, at)), "BADBUZZ_SUMMARY_WEBHOOKS": webhook_server.url,
        "BADBUZZ_ALERT_EMAILS": MAILS["comms"], "BADBUZZ_DATASCIENCE_EMAILS": MAILS["data_science"],
        "BADBUZZ_DEVOPS_EMAILS": MAILS["devops"]}
    w = start_worker("summary", **env)
    tweets = [(b"airparadis", orjson.dumps({"id": f"s{i}", "brand": "airparadis", "text": text}))
              for i, text in enumerate(["@airparadis thanks for the smooth flight"] * 6
                                       + ["@airparadis lost my luggage, worst airline ever"] * 4)]
    tweets += [(b"freebox", orjson.dumps({"id": "fr1", "brand": "freebox", "text": "merci @freebox"}))]
    tweets += [(None, b"{not json"), (None, b'{"id": "x"}')]
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], tweets))
    assert time.time() < at.timestamp(), "the tweets must fall in the summary that ends at `at`"

    wait = at.timestamp() - time.time() + 90
    mails = [m for m in smtp_server.wait_for(3, timeout=wait) if "Daily summary" in m.subject]
    assert sorted(m.message["To"] for m in mails) == sorted(MAILS.values()), "one e-mail per team"
    posts = webhook_server.wait_for(3, timeout=10)
    assert sorted(p["summary"]["team"] for p in posts) == sorted(MAILS)
    data = posts[0]["summary"]
    assert data["day"] == at.date().isoformat() and data["to"] == f"{at:%H:%M} UTC"
    assert data["brands"]["airparadis"]["tweets"] == 10 and data["brands"]["freebox"]["tweets"] == 1
    assert data["dead_letters"] == 2 and data["latency_p95_ms"] is not None
    assert 0 < data["brands"]["airparadis"]["negative_share"] < 1
    assert "airparadis" in mails[0].text() and "Dead letters: 2" in mails[0].text()

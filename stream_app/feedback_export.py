"""``badbuzz feedback export``: the feedback topic as a CSV of corrected labels, for retraining."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .alerting.feedback import write_feedback_csv
from .kafkaio import consume_topic, decode


def export_feedback(url: str, settings: Any, output: Path, *, timeout: float = 3.0) -> int:
    async def read() -> list[dict]:
        rows = []
        async for rec in consume_topic(url, settings.topics.feedback, timeout=timeout, from_beginning=True):
            value = decode(rec.value)
            if isinstance(value, dict) and value.get("tweet_id"):
                rows.append(value)
        return rows

    return write_feedback_csv(asyncio.run(read()), output)

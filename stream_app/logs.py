"""Logging set-up for every badbuzz process, in one place: text for people, JSON lines for log pipelines.

The worker hands the same ``dictConfig`` to Faust (mode's ``logging_config``), the other commands apply it
themselves: one format, one stream (stderr), whatever the entry point.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"

# Fields a log call may add with ``extra=`` about the record it concerns (JSON keeps them as keys, the
# text format ignores them): tweet_id, topic, partition, offset, alert_id, code.


def level_number(level: str | int) -> int:
    """``"info"``/``"WARNING"``/``20`` as a logging level number; ValueError for anything else."""
    number = level if isinstance(level, int) else logging.getLevelName(str(level).strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def logging_config(level: str | int = "info", fmt: str = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``fmt`` ('text' or 'json'): one stderr handler on the root logger.

    JSON uses python-json-logger's formatter: maintained, a plain ``logging.Formatter`` (so Faust's, aiokafka's
    and our own loggers all go through it unchanged), and it turns ``extra=`` fields into JSON keys.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    level = level_number(level)
    if fmt == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["levelname", "name", "message"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC, from the record's creation time
            "json_ensure_ascii": False,
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"badbuzz": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "badbuzz", "level": level}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure_logging(level: str | int = "info", fmt: str = "text") -> None:
    """Apply ``logging_config`` to this process; Python warnings go through it too (one line format)."""
    logging.config.dictConfig(logging_config(level, fmt))
    logging.captureWarnings(True)


def about_message(msg: Any, **more: Any) -> dict[str, Any]:
    """``extra=`` fields for a log call about one consumed record (a Faust or aiokafka message)."""
    key = getattr(msg, "key", None)
    fields = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
    if isinstance(key, bytes | bytearray) and 0 < len(key) <= 128:  # the producers' key is the tweet id
        fields["record_key"] = bytes(key).decode("utf-8", "replace")
    return fields | more


def about_partition(tp: Any, **more: Any) -> dict[str, Any]:
    """``extra=`` fields for a log call about one topic partition."""
    return {"topic": tp.topic, "partition": tp.partition} | more

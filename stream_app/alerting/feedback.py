"""Feedback export for retraining: corrected labels as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

CSV_COLUMNS = ("text", "predicted_label", "correct_label", "reporter", "at", "tweet_id")


def is_misclassification(feedback: Mapping[str, Any], predicted_label: str | None = None) -> bool:
    """A feedback event is a misclassification when its corrected label differs from the prediction."""
    predicted = predicted_label if predicted_label is not None else feedback.get("predicted_label")
    correct = feedback.get("correct_label")
    return predicted is not None and correct is not None and str(predicted) != str(correct)


def _clean(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # Neutralise spreadsheet formula injection (=, +, -, @ at the start of a cell).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        text = "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_feedback_csv(
    rows: Iterable[Mapping[str, Any]],
    out: str | Path | IO[str],
    *,
    latest_only: bool = True,
) -> int:
    """Write feedback dicts (``tweet_id, correct_label, reporter, at`` and optional ``text,
    predicted_label``) as CSV with header ``text,predicted_label,correct_label,reporter,at,tweet_id``.

    With ``latest_only`` a tweet reported several times keeps only its latest report (by ``at``, then
    arrival order); rows come out in the arrival order of the kept reports. Rows without ``tweet_id`` or
    ``correct_label`` are skipped. Returns the number of rows written.
    """
    selected: list[Mapping[str, Any]] = []
    if latest_only:
        latest: dict[str, tuple[str, int, Mapping[str, Any]]] = {}
        for i, r in enumerate(rows):
            if not r.get("tweet_id") or not r.get("correct_label"):
                continue
            key = str(r["tweet_id"])
            cand = (str(r.get("at") or ""), i, r)
            if key not in latest or cand[:2] >= latest[key][:2]:
                latest[key] = cand
        selected = [v[2] for v in sorted(latest.values(), key=lambda v: v[1])]
    else:
        selected = [r for r in rows if r.get("tweet_id") and r.get("correct_label")]

    def _write(fh: IO[str]) -> None:
        w = csv.writer(fh)  # RFC 4180: CRLF rows, fields with CR/LF/quotes/commas quoted
        w.writerow(CSV_COLUMNS)
        for r in selected:
            w.writerow([_clean(r.get(c)) for c in CSV_COLUMNS])

    if isinstance(out, str | Path):
        with open(out, "w", encoding="utf-8", newline="") as fh:
            _write(fh)
    else:
        _write(out)
    return len(selected)


def feedback_csv_text(rows: Iterable[Mapping[str, Any]], **kwargs: Any) -> str:
    buf = io.StringIO()
    write_feedback_csv(rows, buf, **kwargs)
    return buf.getvalue()

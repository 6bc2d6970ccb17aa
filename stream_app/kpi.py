"""The enriched event's KPI defaults: every KPI has a value, so no table, CSV or chart has an empty cell.

``incident`` is ``"none"`` when no incident was found and ``topics`` holds ``"general"`` when no topic
matched. Both are placeholders, not signals: whoever counts incidents or topics asks these helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NO_INCIDENT = "none"
GENERAL_TOPIC = "general"


def incident_of(event: Mapping[str, Any]) -> str | None:
    """The event's incident type, or None when it has none (``"none"``, or null in events before issue 21)."""
    incident = event.get("incident")
    return incident if incident and incident != NO_INCIDENT else None


def topic_signals(event: Mapping[str, Any]) -> list[str]:
    """The topics the rules matched (``"general"``, the no-topic placeholder, left out)."""
    return [t for t in event.get("topics") or () if t != GENERAL_TOPIC]

"""A bound on the brands the worker keeps apart: metric labels, dashboard cards, alerting ticks.

Brands are attacker-controlled text (any tweet can name one): 3,000 distinct brands once grew ``/metrics``
from 8 KB to 459 KB. Brands the rule tables or the alert rules name always keep their own label; others are
admitted first come, first served up to ``limit``; the rest share the label ``other``.
"""

from __future__ import annotations

from collections.abc import Iterable

OTHER = "other"


class BrandCap:
    def __init__(self, limit: int, known: Iterable[str] = ()) -> None:
        self.limit = limit
        self.known = frozenset(known)
        self.admitted: set[str] = set()

    def label(self, brand: str | None) -> str:
        """The brand itself if it is known or still fits under the cap, else ``other``."""
        b = brand or ""
        if b in self.known or b in self.admitted:
            return b
        if len(self.admitted) < self.limit:
            self.admitted.add(b)
            return b
        return OTHER

    def keeps(self, brand: str | None) -> bool:
        return self.label(brand) != OTHER

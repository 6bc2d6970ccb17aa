"""Per-key rate limits (a client address, a brand) for the worker's web endpoints, on the `limits` library.

`limits` is maintained, parses the usual "100/minute" notation (so a limit is a plain setting) and counts
in a moving window: at most N hits in any window, never 2N across a window edge as a fixed window allows.
Storage is in memory and per worker, like the feedback counts and the scoring it protects; its own timer
drops the entries of keys whose window has passed, so memory follows the clients of the last window only.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


def parse_rate(rule: str) -> list[RateLimitItem]:
    """``"100/minute"`` (or several, ``"20/20 seconds;60/minute"``) as limits items; ValueError when invalid."""
    try:
        items = parse_many(rule)
    except ValueError as exc:
        raise ValueError(f"invalid rate limit {rule!r}: {exc}") from None
    if not items:
        raise ValueError(f"invalid rate limit {rule!r}: no limit in it")
    return items


class RateLimit:
    """One rule (one or more limits, all enforced) applied per key."""

    def __init__(self, rule: str, namespace: str) -> None:
        self.rule, self.namespace = rule, namespace
        self.items = parse_rate(rule)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, key: str) -> int:
        """Count one hit for ``key``: 0 when allowed, else whole seconds (>= 1) until one would be.

        A refused request does not count, so a client that waits as told gets in.
        """
        blocked = [item for item in self.items if not self.limiter.test(item, self.namespace, key)]
        if not blocked:
            for item in self.items:
                self.limiter.hit(item, self.namespace, key)
            return 0
        now = time.time()
        resets = [self.limiter.get_window_stats(item, self.namespace, key).reset_time for item in blocked]
        return max(1, math.ceil(max(resets) - now))

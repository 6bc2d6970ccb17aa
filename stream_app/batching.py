"""Micro-batches of stream events that are acknowledged only once they are done, with no silent gaps.

Faust's ``Stream.take_events`` acks every buffered event in a ``finally`` block, so when an agent is
stopped in the middle of a batch (worker shutdown, a rebalance that restarts agents) the offsets of
events it never processed are committed and those tweets are lost for good. ``noack_take`` leaves the
acks to us: a batch is acked after the loop body finished it, i.e. after its outputs were handed to
the producer (Faust flushes the producer before every offset commit). An interrupted batch is not
acked and is processed again after the restart: at-least-once, consumers dedup by ``id``.

Around a rebalance Faust can also drop events it had already fetched (its stream skips queued events
while the flow is paused; see :mod:`stream_app.consumer_fixes`): the kill -9 test caught a restarted
worker jumping over 20-130 offsets of a partition. Seeking the Faust consumer back does not help (its
fetch loop drops offsets below the last one it handed out), so :class:`GapGuard` notices the jump and
the missing records are read straight from the broker and put into the batch, then acked.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import faust

from . import metrics
from .consumer_fixes import record_done

log = logging.getLogger(__name__)


@dataclass
class FetchedEvent:
    """A record read directly from the broker to fill a gap; quacks like a Faust event for the agents."""

    message: Any  # a Faust ConsumerMessage

    @property
    def value(self) -> Any:
        return self.message.value


class GapGuard:
    """Next expected offset per partition; a delivered offset beyond it means events were dropped."""

    def __init__(self) -> None:
        self.expected: dict[Any, int] = {}
        self.last_seen: dict[Any, float] = {}  # monotonic time of the last delivery per partition
        self.generation: int | None = None
        self.filled = 0  # records read directly, for metrics and logs

    def missing(self, events: list[Any], generation: int,
                committed: Callable[[Any], int | None] = lambda tp: None) -> dict[Any, set[int]]:
        """Partition -> offsets that should have come before or between this batch's events.

        The first event of a partition in a generation is expected at its ``committed`` offset: events
        Faust dropped before it are a gap too.
        """
        if generation != self.generation:  # new assignment: positions restart from the committed offsets
            self.expected.clear()
            self.last_seen.clear()
            self.generation = generation
        now = time.monotonic()
        seen: dict[Any, set[int]] = {}
        start: dict[Any, int] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            want = self.expected.get(tp)
            if want is None and tp not in seen:
                want = committed(tp)
            if want is not None and offset > want and tp not in start:
                start[tp] = want
            seen.setdefault(tp, set()).add(offset)
            self.last_seen[tp] = now
            # re-delivered events (offset < want) are processed again and do not move the mark back
            self.expected[tp] = max(offset + 1, want or 0)
        out: dict[Any, set[int]] = {}
        for tp, first in start.items():
            gap = set(range(first, max(seen[tp]))) - seen[tp]
            if gap:
                out[tp] = gap
        return out


    def stalled(self, positions: dict[Any, int], idle: float, now: float) -> dict[Any, int]:
        """Partitions idle for ``idle`` s whose fetch position is past what was delivered: tail dropped."""
        return {tp: want for tp, want in self.expected.items()
                if now - self.last_seen.get(tp, now) >= idle and positions.get(tp, want) > want}


_GUARDS: weakref.WeakSet[GapGuard] = weakref.WeakSet()


async def heal_stalled(app: Any, idle: float = 5.0) -> int:
    """Seek back partitions whose last fetched events never reached the agent (nothing came after them).

    A gap in the middle of a partition shows at the next delivered event; a dropped *tail* does not,
    so a timer calls this. The partition is idle, so the seek does not race with Faust's fetch loop.
    """
    consumer = app.consumer
    healed = 0
    now = time.monotonic()
    for guard in list(_GUARDS):
        if guard.generation != app.consumer_generation_id:
            continue
        positions: dict[Any, int] = {}
        for tp in list(guard.expected):
            try:
                position = await consumer.position(tp)
            except Exception:  # noqa: BLE001 - not assigned any more
                continue
            if position is not None:
                positions[tp] = position
        for tp, want in guard.stalled(positions, idle, now).items():
            log.warning("%s: fetched up to %d but delivered only up to %d; reading from %d again",
                        tp, positions[tp], want, want)
            guard.last_seen[tp] = now  # one seek per idle period
            try:
                await consumer.seek(tp, want)
                healed += 1
                metrics.CONSUMER_REPAIRS.labels("tail_reread").inc(positions[tp] - want)
            except Exception:  # noqa: BLE001
                log.warning("%s: could not seek back", tp, exc_info=True)
    return healed


async def read_records(bootstrap_servers: str, tp: Any, offsets: set[int], timeout: float = 10.0) -> list[Any]:
    """The records at ``offsets`` of ``tp`` (one partition), read with a group-less consumer."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        part = TopicPartition(tp.topic, tp.partition)
        consumer.assign([part])
        consumer.seek(part, min(offsets))
        last, found = max(offsets), []
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(part, timeout_ms=500, max_records=500)
            records = batch.get(part, [])
            found += [r for r in records if r.offset in offsets]
            if records and records[-1].offset >= last:
                break
        return found
    finally:
        await consumer.stop()


async def acked_batches(stream: faust.StreamT, size: int, within: float,
                        bootstrap_servers: str | None = None) -> AsyncIterator[list[Any]]:
    """Yield lists of up to ``size`` events (or whatever arrived ``within`` seconds); ack after each.

    With ``bootstrap_servers``, events Faust dropped are read from the broker and added to the batch.
    """
    guard = GapGuard()
    _GUARDS.add(guard)
    app = stream.app
    consumer = app.consumer
    async for events in stream.noack_take(size, within):
        extra: list[FetchedEvent] = []
        if bootstrap_servers:
            committed = consumer._committed_offset.get  # faust keeps no public accessor
            for tp, offsets in guard.missing(events, app.consumer_generation_id, committed).items():
                log.warning("%s: %d offsets from %d were dropped by the consumer; reading them from the broker",
                            tp, len(offsets), min(offsets))
                try:
                    records = await read_records(bootstrap_servers, tp, offsets)
                except Exception:  # noqa: BLE001 - left uncommitted: read again after a restart
                    log.exception("%s: could not read the dropped offsets", tp)
                    continue
                extra += [FetchedEvent(consumer._to_message(tp, r)) for r in records]
                guard.filled += len(records)
                metrics.CONSUMER_REPAIRS.labels("gap_refilled").inc(len(records))
        yield extra + list(events)
        # Only reached when the consumer asks for the next batch, i.e. this one completed.
        for event in events:
            await stream.ack(event)
        for fetched in extra:  # processed: their offsets count as done, so the commit can move past them
            record_done(consumer, fetched.message)

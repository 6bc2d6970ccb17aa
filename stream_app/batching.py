"""Micro-batches of stream events that are acknowledged only once they are done, with no silent gaps.

Faust's ``Stream.take_events`` acks every buffered event in a ``finally`` block, so when an agent is
stopped in the middle of a batch (worker shutdown, a rebalance that restarts agents) the offsets of
events it never processed are committed and those tweets are lost for good. :class:`EagerTake` (like
Faust's ``noack_take``) leaves the acks to us: a batch is acked after the loop body finished it,
i.e. after its outputs were handed to the producer (Faust flushes the producer before every offset
commit). An interrupted batch is not acked and is processed again after the restart: at-least-once,
consumers dedup by ``id``.

Around a rebalance Faust can also drop events it had already fetched (its stream skips queued events
while the flow is paused; see :mod:`stream_app.consumer_fixes`): the kill -9 test caught a restarted
worker jumping over 20-130 offsets of a partition. Seeking the Faust consumer back does not help (its
fetch loop drops offsets below the last one it handed out), so :class:`GapGuard` notices the jump and
the missing records are read straight from the broker and put into the batch, then acked.

Batches grow with the load (:class:`EagerTake`): Faust's ``noack_take`` stops buffering while the agent
works on a batch, so each batch only held what arrived in the next ``within`` seconds (54 tweets on
average at saturation, where the model runs best on a few hundred length-sorted tweets), and
:func:`prepared_batches` starts scoring the next batch while the agent publishes the current one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import faust

from . import metrics
from .consumer_fixes import lowest_done, record_done
from .logs import about_partition

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


class CommitWatch:
    """Partitions whose next offset to commit stays missing while later offsets are done.

    Batches are acked in order, so such a hole does not heal by itself: the commit waits for it forever
    and a restart would replay the whole partition. Seen once in ~20 kill -9 runs (a refilled gap).
    """

    def __init__(self) -> None:
        self.since: dict[Any, float] = {}

    def holes(self, state: dict[Any, tuple[int | None, int | None]], idle: float, now: float) -> dict[Any, int]:
        """``state``: partition -> (committed offset, lowest done offset). Partition -> committed offset for
        the holes open for ``idle`` seconds (reported once per idle period)."""
        out: dict[Any, int] = {}
        for tp, (committed, low) in state.items():
            if committed is None or low is None or low - committed <= 1:  # Faust commits across one offset
                self.since.pop(tp, None)
                continue
            if now - self.since.setdefault(tp, now) >= idle:
                out[tp] = committed
                self.since[tp] = now
        for tp in set(self.since) - set(state):
            del self.since[tp]
        return out


_WATCH = CommitWatch()


async def heal_stalled(app: Any, idle: float = 5.0) -> int:
    """Seek back partitions whose last fetched events never reached the agent (nothing came after them).

    A gap in the middle of a partition shows at the next delivered event; a dropped *tail* does not,
    so a timer calls this. The partition is idle, so the seek does not race with Faust's fetch loop.
    Also seeks back to the committed offset where a hole before done offsets holds the commit
    (:class:`CommitWatch`).
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
                        tp, positions[tp], want, want, extra=about_partition(tp, offset=want))
            guard.last_seen[tp] = now  # one seek per idle period
            try:
                await consumer.seek(tp, want)
                healed += 1
                metrics.CONSUMER_REPAIRS.labels("tail_reread").inc(positions[tp] - want)
            except Exception:  # noqa: BLE001
                log.warning("%s: could not seek back", tp, exc_info=True)
    state = {tp: (consumer._committed_offset.get(tp), lowest_done(consumer, tp)) for tp in list(consumer._acked)}
    for tp, committed in _WATCH.holes(state, 2 * idle, now).items():
        log.warning("%s: offsets from %d stay unacknowledged while %d is done; reading from %d again",
                    tp, committed, state[tp][1], committed, extra=about_partition(tp, offset=committed))
        try:
            await consumer.seek(tp, committed)
            healed += 1
            metrics.CONSUMER_REPAIRS.labels("commit_hole").inc(state[tp][1] - committed)
        except Exception:  # noqa: BLE001 - revoked meanwhile: its new owner starts at the committed offset
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


class EagerTake:
    """Like ``Stream.noack_take``, but events keep flowing into the buffer while a batch is processed.

    A lone event waits at most ``within`` seconds for company; under load the next batch is already
    full when the agent asks for it, so batch size follows the load with no added latency. At most
    ``2 * max_`` events are held (the stream then waits: backpressure). Acks are left to the caller.
    """

    def __init__(self, stream: faust.StreamT, max_: int, within: float) -> None:
        self.stream, self.max, self.within = stream, max_, within
        self.buffer: list[Any] = []
        self.have, self.full, self.room = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.room.set()

    async def _add(self, value: Any) -> Any:
        event = self.stream.current_event
        if event is None:
            raise RuntimeError("EagerTake: no current event")
        self.buffer.append(event)
        self.have.set()
        if len(self.buffer) >= self.max:
            self.full.set()
        if len(self.buffer) >= 2 * self.max:
            self.room.clear()
            await self.stream.wait(self.room)
        return value

    def start(self) -> None:
        self._enable_acks = self.stream.enable_acks
        self.stream.enable_acks = False
        self.stream.add_processor(self._add)
        self.stream._enable_passive(aiter(self.stream.channel))  # how faust's own take drains the channel

    def stop(self) -> None:
        self.stream.enable_acks = self._enable_acks
        self.stream._processors.remove(self._add)

    def ready(self) -> bool:
        return bool(self.buffer)

    async def get(self) -> list[Any] | None:
        """The next batch: waits for a first event, then up to ``within`` for a full batch."""
        stream = self.stream
        while not self.buffer:
            if stream.should_stop:
                return None
            self.have.clear()
            await stream.wait_for_stopped(self.have, timeout=1.0)
        if len(self.buffer) < self.max and self.within:
            await stream.wait_for_stopped(self.full, timeout=self.within)
        return self.now()

    def now(self) -> list[Any]:
        """Whatever is buffered (up to ``max``), without waiting."""
        batch = self.buffer[: self.max]
        del self.buffer[: self.max]
        if len(self.buffer) < self.max:
            self.full.clear()
        self.room.set()
        return batch


class _Acker:
    """Gap-checked batches from an :class:`EagerTake`, acked once done (shared by both iterators below)."""

    def __init__(self, stream: faust.StreamT, size: int, within: float, bootstrap_servers: str | None) -> None:
        self.take = EagerTake(stream, size, within)
        self.stream, self.bootstrap = stream, bootstrap_servers
        self.guard = GapGuard()
        _GUARDS.add(self.guard)

    async def complete(self, events: list[Any]) -> list[Any]:
        """``events`` plus the records Faust dropped before them, read from the broker."""
        app = self.stream.app
        consumer = app.consumer
        extra: list[FetchedEvent] = []
        if self.bootstrap:
            committed = consumer._committed_offset.get  # faust keeps no public accessor
            for tp, offsets in self.guard.missing(events, app.consumer_generation_id, committed).items():
                log.warning("%s: %d offsets from %d were dropped by the consumer; reading them from the broker",
                            tp, len(offsets), min(offsets), extra=about_partition(tp, offset=min(offsets)))
                try:
                    records = await read_records(self.bootstrap, tp, offsets)
                except Exception:  # noqa: BLE001
                    log.exception("%s: could not read the dropped offsets", tp)
                    # Faust counts a jump in offsets as done (a gap): the commit would pass over them.
                    # Without it the commit waits, and CommitWatch reads them again.
                    consumer._gap[tp].chop(min(offsets), max(offsets) + 1)
                    continue
                extra += [FetchedEvent(consumer._to_message(tp, r)) for r in records]
                self.guard.filled += len(records)
                metrics.CONSUMER_REPAIRS.labels("gap_refilled").inc(len(records))
        return extra + list(events)

    async def ack(self, batch: list[Any]) -> None:
        consumer = self.stream.app.consumer
        for event in batch:
            if isinstance(event, FetchedEvent):  # processed: its offset counts as done, the commit moves past it
                record_done(consumer, event.message)
            else:
                await self.stream.ack(event)


async def acked_batches(stream: faust.StreamT, size: int, within: float,
                        bootstrap_servers: str | None = None) -> AsyncIterator[list[Any]]:
    """Yield lists of up to ``size`` events (or whatever arrived ``within`` seconds); ack after each.

    With ``bootstrap_servers``, events Faust dropped are read from the broker and added to the batch.
    """
    acker = _Acker(stream, size, within, bootstrap_servers)
    acker.take.start()
    try:
        while (events := await acker.take.get()) is not None:
            batch = await acker.complete(events)
            yield batch
            # Only reached when the consumer asks for the next batch, i.e. this one completed.
            await acker.ack(batch)
    finally:
        acker.take.stop()


async def prepared_batches(stream: faust.StreamT, size: int, within: float, bootstrap_servers: str | None,
                           prepare: Callable[[list[Any]], Any]) -> AsyncIterator[tuple[list[Any], Any]]:
    """Like :func:`acked_batches`, yielding ``(batch, prepare(batch))`` with one batch of lookahead.

    ``prepare`` starts work without awaiting it (e.g. scoring in an executor). When the next batch is
    already buffered, it is prepared before the current one is yielded, so the model scores batch N+1
    while the agent publishes batch N; when nothing is waiting, the current batch goes at once (no
    added latency). Acks stay in order and only follow the agent's work on a batch.
    """
    acker = _Acker(stream, size, within, bootstrap_servers)
    acker.take.start()
    try:
        events = await acker.take.get()
        if events is None:
            return
        batch = await acker.complete(events)
        prepared = prepare(batch)
        while True:
            ahead: tuple[list[Any], Any] | None = None
            if acker.take.ready():
                nxt = await acker.complete(acker.take.now())
                ahead = (nxt, prepare(nxt))
            yield batch, prepared
            await acker.ack(batch)
            if ahead is None:
                events = await acker.take.get()
                if events is None:
                    return
                nxt = await acker.complete(events)
                ahead = (nxt, prepare(nxt))
            batch, prepared = ahead
    finally:
        acker.take.stop()

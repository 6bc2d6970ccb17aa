"""The plain-aiokafka helpers against the embedded broker, whose ListOffsets(latest) answer is not the end."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from stream_app.broker import bootstrap, ensure_topics
from stream_app.kafkaio import consume_topic, group_lag, produce_messages

pytestmark = pytest.mark.integration


def test_group_lag_is_highwater_minus_committed(broker) -> None:
    topic = "kafkaio.lag"
    asyncio.run(ensure_topics(broker.url, [topic], partitions=2))
    msgs = [(f"k{i % 5}".encode(), f"v{i}".encode()) for i in range(300)]  # one produce batch per partition

    async def scenario() -> tuple[dict[int, int], dict[int, int]]:
        await produce_messages(broker.url, topic, msgs)
        before = await group_lag(broker.url, "kafkaio-g", topic)
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap(broker.url), group_id="kafkaio-g",
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            n = 0
            while n < 250:
                n += sum(len(r) for r in (await consumer.getmany(timeout_ms=500, max_records=250 - n)).values())
            await consumer.commit()
        finally:
            await consumer.stop()
        return before, await group_lag(broker.url, "kafkaio-g", topic)

    before, after = asyncio.run(scenario())
    assert sum(before.values()) == 300, before
    assert sum(after.values()) == 50, after


def test_tailing_a_topic_starts_at_its_end(broker) -> None:
    topic = "kafkaio.tail"
    asyncio.run(ensure_topics(broker.url, [topic], partitions=1))

    async def scenario() -> list[bytes]:
        await produce_messages(broker.url, topic, [(b"k", f"old{i}".encode()) for i in range(200)])
        tail = consume_topic(broker.url, topic, limit=3, timeout=5, from_beginning=False)
        first = asyncio.ensure_future(anext(tail))
        await asyncio.sleep(1.5)  # the tail is positioned
        await produce_messages(broker.url, topic, [(b"k", f"new{i}".encode()) for i in range(3)])
        got = [(await first).value] + [r.value async for r in tail]
        return got

    assert asyncio.run(scenario()) == [b"new0", b"new1", b"new2"]

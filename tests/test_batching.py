"""GapGuard: the offsets a partition skipped, and read_records filling them from a real broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from stream_app.batching import GapGuard, read_records
from stream_app.broker import bootstrap, ensure_topics
from stream_app.kafkaio import produce_messages


def ev(partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(tp=("tweets", partition), offset=offset))


def test_contiguous_offsets_have_no_gap() -> None:
    g = GapGuard()
    assert g.missing([ev(0, 5), ev(1, 0), ev(0, 6)], generation=1) == {}
    assert g.missing([ev(0, 7), ev(1, 1)], generation=1) == {}


def test_a_jump_reports_the_first_missing_offset() -> None:
    g = GapGuard()
    g.missing([ev(0, 616), ev(0, 623)], generation=1)  # first batch: no reference yet for a hole inside it
    assert g.missing([ev(0, 645), ev(0, 646), ev(2, 3)], generation=1) == {("tweets", 0): set(range(624, 645))}


def test_holes_inside_a_batch_are_found() -> None:
    g = GapGuard()
    g.missing([ev(2, 399)], generation=1)
    assert g.missing([ev(2, 400), ev(2, 402), ev(2, 404)], generation=1) == {("tweets", 2): {401, 403}}


def test_rereading_after_the_seek_is_not_a_new_gap() -> None:
    g = GapGuard()
    g.missing([ev(0, 10)], generation=1)
    assert g.missing([ev(0, 20)], generation=1) == {("tweets", 0): set(range(11, 20))}
    assert g.missing([ev(0, 11), ev(0, 12), ev(0, 20), ev(0, 21)], generation=1) == {}  # re-read, then onwards


def test_a_new_generation_forgets_positions() -> None:
    g = GapGuard()
    g.missing([ev(0, 10)], generation=1)
    assert g.missing([ev(0, 500)], generation=2) == {}  # another worker moved the partition on meanwhile


@pytest.mark.integration
def test_read_records_fetches_exactly_the_missing_offsets(broker) -> None:
    topic = "batching.gapfill"
    asyncio.run(ensure_topics(broker.url, [topic], partitions=1))
    asyncio.run(produce_messages(broker.url, topic, [(b"k", f"v{i}".encode()) for i in range(40)]))
    tp = SimpleNamespace(topic=topic, partition=0)
    records = asyncio.run(read_records(bootstrap(broker.url), tp, {3, 7, 38}))
    assert [(r.offset, r.value) for r in records] == [(3, b"v3"), (7, b"v7"), (38, b"v38")]


def test_a_dropped_tail_shows_as_an_idle_partition_fetched_past_its_last_delivery() -> None:
    g = GapGuard()
    g.missing([ev(2, 433), ev(0, 90)], generation=1)
    now = g.last_seen[("tweets", 2)]
    positions = {("tweets", 2): 576, ("tweets", 0): 91}
    assert g.stalled(positions, idle=5.0, now=now + 1) == {}  # not idle long enough: events may be queued
    assert g.stalled(positions, idle=5.0, now=now + 6) == {("tweets", 2): 434}  # partition 0 is caught up


def test_events_dropped_before_the_first_delivery_are_a_gap_from_the_committed_offset() -> None:
    g = GapGuard()
    committed = {("tweets", 0): 400, ("tweets", 1): 7}.get
    assert g.missing([ev(0, 451), ev(0, 452), ev(1, 7)], generation=3, committed=committed) == {
        ("tweets", 0): set(range(400, 451))}

"""Commit offsets from Faust's acked list, with the duplicates and gaps the kill -9 test produced."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.types import TP as FaustTP
from intervaltree import IntervalTree

from stream_app.batching import CommitWatch
from stream_app.consumer_fixes import dedup_commit_offsets, lowest_done, next_commit_offset

TP = FaustTP("tweets", 0)


def consumer(acked: list[int], committed: int | None, gaps: tuple[tuple[int, int], ...] = ()) -> SimpleNamespace:
    gap = defaultdict(IntervalTree)
    for begin, end in gaps:
        gap[TP].addi(begin, end)
    return SimpleNamespace(_acked=defaultdict(list, {TP: list(acked)}), _gap=gap,
                           _committed_offset=defaultdict(lambda: None, {TP: committed}),
                           _acked_index=defaultdict(set, {TP: set(acked)}))


def test_duplicates_do_not_stall_the_commit() -> None:
    # the state the kill -9 test caught: done up to 1963, listed with duplicates and one stale offset
    acked = list(range(517, 1964)) + list(range(518, 600)) + list(range(600, 700))
    c = consumer(acked, committed=518)
    assert next_commit_offset(c, TP) == 1964
    assert c._acked[TP] == [] and c._acked_index[TP] == set()
    assert next_commit_offset(c, TP) is None


def test_faust_stalls_on_the_same_list() -> None:
    acked = list(range(517, 1964)) + list(range(518, 600))  # the kill -9 state had ~150 duplicates
    c = consumer(acked, committed=518)
    steps = [Consumer._new_offset(c, TP) for _ in range(3)]
    assert steps == [519, 520, 521]  # one offset per commit interval, with 1,963 done


def test_gap_ranges_count_as_done_once() -> None:
    c = consumer([10, 11, 15, 16, 17], committed=10, gaps=((12, 15), (30, 40)))
    assert next_commit_offset(c, TP) == 18
    assert [(i.begin, i.end) for i in c._gap[TP]] == [(30, 40)]


def test_a_hole_after_the_committed_offset_waits() -> None:
    c = consumer([20, 21, 23], committed=18)
    assert next_commit_offset(c, TP) is None
    assert c._acked[TP] == [20, 21, 23]  # kept for the next try
    c._acked[TP] += [18, 19]
    assert next_commit_offset(c, TP) == 22
    assert c._acked[TP] == [23] and c._acked_index[TP] == {23}


def test_the_patch_replaces_faust_new_offset() -> None:
    original = Consumer._new_offset
    try:
        dedup_commit_offsets()
        assert Consumer._new_offset(consumer([5, 5, 6, 6, 7], committed=5), TP) == 8
    finally:
        Consumer._new_offset = original


def test_lowest_done_counts_gaps_and_ignores_committed_offsets() -> None:
    assert lowest_done(consumer([3, 9, 12], committed=5, gaps=((7, 8),)), TP) == 7
    assert lowest_done(consumer([3, 4], committed=5), TP) is None


def test_a_hole_before_done_offsets_is_reported_once_it_lasts() -> None:
    watch = CommitWatch()
    hole = {TP: (256, 493)}
    assert watch.holes(hole, idle=10, now=100.0) == {}
    assert watch.holes(hole, idle=10, now=105.0) == {}
    assert watch.holes(hole, idle=10, now=110.0) == {TP: 256}
    assert watch.holes(hole, idle=10, now=111.0) == {}  # once per idle period
    assert watch.holes({TP: (256, 257)}, idle=10, now=130.0) == {}  # Faust commits across one offset
    assert watch.holes({TP: (300, 301)}, idle=10, now=131.0) == {} and watch.since == {}


def test_a_failed_refill_is_not_committed_past() -> None:
    from stream_app.batching import _Acker
    from stream_app.broker import free_port

    c = consumer(list(range(0, 5)), committed=0, gaps=((5, 10),))  # Faust saw the jump 4 -> 10
    c.app = SimpleNamespace(consumer_generation_id=1)
    c._to_message = lambda tp, record: record
    stream = SimpleNamespace(app=SimpleNamespace(consumer=c, consumer_generation_id=1))
    ev = lambda offset: SimpleNamespace(message=SimpleNamespace(tp=TP, offset=offset))  # noqa: E731
    acker = _Acker(stream, 16, 0.0, f"127.0.0.1:{free_port()}")  # nothing listens: the refill fails
    assert asyncio.run(acker.complete([ev(o) for o in range(5)])) != []
    events = asyncio.run(acker.complete([ev(10), ev(11)]))
    assert [e.message.offset for e in events] == [10, 11]
    assert not c._gap[TP].overlaps(5, 10)
    c._acked[TP] += [10, 11]
    assert next_commit_offset(c, TP) == 5  # stops before the offsets it could not read

"""Scenario simulator as a long-running producer (the compose ``simulator`` profile).

Sends what ``badbuzz demo`` sends, to a real Kafka: a backfill of calm history (event times in the last
15 minutes, the alert rules' baselines), then live chatter at ``--rate`` tweets/s with a bad-buzz storm
from 30% of each ``--duration`` cycle. With ``--loop`` it starts a new cycle (new seed, so new tweet ids)
forever. Reads BADBUZZ_BROKER, BADBUZZ_TOPIC_TWEETS and BADBUZZ_PARTITIONS like the worker.

    python deploy/simulator.py --rate 20 --duration 300 --loop
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import AsyncIterator, Iterator

import orjson

from stream_app.broker import ensure_topics
from stream_app.config import Settings
from stream_app.events import tweet_key
from stream_app.kafkaio import produce_messages
from stream_app.simulator import Scenario

Message = tuple[bytes | None, bytes]


def history_messages(scenario: Scenario, now: float) -> Iterator[Message]:
    """Calm past traffic, keyed by tweet id (``events.tweet_key``: a storm spreads over the workers)."""
    for tweet in scenario.history(now):
        yield tweet_key(tweet), orjson.dumps(tweet)


def live_messages(scenario: Scenario, start: float, duration: float, rate: float) -> Iterator[tuple[float, Message]]:
    """``(send_offset_s, (key, value))``; live tweets carry no created_at (event time = Kafka timestamp)."""
    for offset, tweet in scenario.live(start, duration, rate):
        tweet.pop("created_at", None)
        yield offset, (tweet_key(tweet), orjson.dumps(tweet))


async def paced(events: Iterator[tuple[float, Message]], start: float) -> AsyncIterator[Message]:
    for offset, message in events:
        delay = start + offset - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield message


async def run(args: argparse.Namespace, settings: Settings) -> None:
    url = settings.broker
    topic = settings.topics.tweets
    # Waits for the broker (retries up to the timeout); existing topics are left alone.
    await ensure_topics(url, [topic], settings.partitions, timeout=args.wait)
    cycles = itertools.count() if args.loop else range(1)
    for cycle in cycles:
        scenario = Scenario(seed=args.seed + cycle)
        if args.history:
            n = await produce_messages(url, topic, history_messages(scenario, time.time()))
            print(f"simulator: cycle {cycle}: backfilled {n} tweets of calm history", flush=True)
        start = time.time()
        n = await produce_messages(url, topic, paced(live_messages(scenario, start, args.duration, args.rate), start))
        print(f"simulator: cycle {cycle}: sent {n} live tweets to {topic}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20.0, help="chatter tweets per second (default 20)")
    p.add_argument("--duration", type=float, default=300.0, help="seconds per cycle; the storm starts at 30%%")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--loop", action="store_true", help="repeat cycles forever")
    p.add_argument("--no-history", dest="history", action="store_false", help="skip the calm-history backfill")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the broker (default 120)")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        p.error("--rate and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    if not settings.broker:
        print("simulator: BADBUZZ_BROKER is not set (e.g. kafka://kafka:9092)", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(args, settings))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

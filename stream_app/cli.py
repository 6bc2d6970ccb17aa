"""``badbuzz`` command line: broker, worker, produce, consume, score, demo, model/rules/feedback tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from .config import DELIVERY_ENV_DOCS, ENV_DOCS, Settings
from .events import tweet_key
from .kafkaio import consume_topic, decode, produce_messages
from .rules.evaluate import add_arguments as rules_eval_arguments


class ConfigError(SystemExit):
    """Exit non-zero with one clear line."""

    def __init__(self, message: str) -> None:
        print(f"badbuzz: error: {message}", file=sys.stderr)
        super().__init__(2)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _worker_settings() -> Settings:
    """Settings for commands that open the web server: off loopback, a token is mandatory."""
    from .web.views import is_loopback

    settings = _settings()
    if not is_loopback(settings.web_host) and not settings.api_token:
        raise ConfigError(f"BADBUZZ_WEB_HOST={settings.web_host} is not loopback: set BADBUZZ_API_TOKEN "
                          "(the feedback endpoint and dashboard require it)")
    return settings


def _enricher(settings: Settings):
    from .enrich import load_enricher

    try:
        return load_enricher(settings)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None


def _alerting(settings: Settings):
    """Alert rules and notifiers, validated at start-up (bad TOML, missing Twilio credentials...)."""
    from .alerting import build_dispatcher, load_config

    try:
        config = load_config(settings.alert_rules)
        return config, build_dispatcher(config)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


# -- broker ---------------------------------------------------------------------------------------
def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt

def cmd_broker(args: argparse.Namespace) -> int:
    from .broker import EmbeddedBroker

    # SIGTERM (``kill %1``) would end Python without the ``finally`` and orphan Tansu (its own session).
    signal.signal(signal.SIGTERM, _interrupt)
    broker = EmbeddedBroker(port=args.port)
    try:
        broker.start(quiet=not args.verbose)
        print(f"BADBUZZ_BROKER={broker.url}", flush=True)
        while broker.process and broker.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


# -- worker ---------------------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    from .broker import broker_for

    settings = _worker_settings()
    enricher = _enricher(settings)
    alerting = _alerting(settings)
    with broker_for(settings.broker) as url:
        if not settings.broker:
            print(f"BADBUZZ_BROKER={url}  (embedded)", flush=True)
        return run_worker(Settings(**{**settings.__dict__, "broker": url}), enricher, alerting,
                          loglevel=args.loglevel or settings.log_level)


def quiet_worker_class() -> type:
    """A Faust worker without the terminal spinner, its root logger at the chosen level.

    Faust's spinner handler sets the root logger to DEBUG, so every debug call of aiokafka and Faust
    (several per produced and fetched message) built a log record that no handler printed: pipeline
    at saturation 216 -> 241 tweets/s without it (medians of 3 interleaved runs, docs/performance.md).
    """
    import faust

    class _Worker(faust.Worker):
        def on_setup_root_logger(self, logger: Any, level: int) -> None:
            self.spinner = None
            logger.setLevel(level)

    return _Worker


def run_worker(settings: Settings, enricher: Any, alerting: tuple[Any, Any] | None = None, *,
               loglevel: str = "info") -> int:
    from .app import build_app, internal_topics
    from .broker import ensure_topics
    from .logs import logging_config

    topics = settings.topics.all() + internal_topics(settings)
    asyncio.run(ensure_topics(settings.broker, topics, settings.partitions))
    asyncio.set_event_loop(asyncio.new_event_loop())
    pipe = build_app(settings, enricher, *(alerting or (None, None)))
    print(f"badbuzz worker: web on http://{settings.web_host}:{settings.web_port}/ "
          f"(metrics /metrics, health /health)", flush=True)
    # Faust (mode) reconfigures logging when the worker starts: it gets the same config as every command.
    worker = quiet_worker_class()(pipe.app, loglevel=loglevel, quiet=True, override_logging=True,
                                  logging_config=logging_config(loglevel, settings.log_format))
    worker.execute_from_commandline()
    return 0


# -- produce / consume ----------------------------------------------------------------------------
def file_messages(args: argparse.Namespace):
    from .sources import read_rows, to_tweet

    if args.raw:
        with open(args.file, "rb") as fh:
            for line in fh:
                yield None, line.rstrip(b"\r\n")
        return
    tweets = (to_tweet(row, i, args.file, text_column=args.text_column, id_column=args.id_column,
                       time_column=args.time_column, brand=args.brand, brand_column=args.brand_column)
              for i, row in enumerate(read_rows(args.file)))
    if args.in_time_order:
        tweets = iter(sorted(tweets, key=_event_time_or_zero))
    for tweet in tweets:
        yield tweet_key(tweet), orjson.dumps(tweet)


def _event_time_or_zero(tweet: dict) -> int:
    """Sort key for ``--in-time-order``: rows without a valid time go first (they are dead-lettered anyway)."""
    from .parsing import InvalidTweet, parse_time

    try:
        return parse_time(tweet["created_at"]) if "created_at" in tweet else 0
    except InvalidTweet:
        return 0


def cmd_produce(args: argparse.Namespace) -> int:
    settings = _settings()
    url = _need_broker(settings)
    topic = args.topic or settings.topics.tweets
    n = asyncio.run(produce_messages(url, topic, file_messages(args), args.rate))
    print(f"produced {n} messages to {topic}", file=sys.stderr)
    return 0


def _need_broker(settings: Settings) -> str:
    if not settings.broker:
        raise ConfigError("BADBUZZ_BROKER is not set (start one with `badbuzz broker` and export the line it prints)")
    return settings.broker


def cmd_consume(args: argparse.Namespace) -> int:
    url = _need_broker(_settings())

    async def run() -> int:
        n = 0
        async for rec in consume_topic(url, args.topic, limit=args.limit, timeout=args.timeout,
                                       from_beginning=args.from_beginning):
            sys.stdout.buffer.write(orjson.dumps(decode(rec.value)) + b"\n")
            n += 1
        sys.stdout.flush()
        return n

    n = asyncio.run(run())
    print(f"consumed {n} events from {args.topic}", file=sys.stderr)
    return 0


# -- score ----------------------------------------------------------------------------------------
def cmd_score(args: argparse.Namespace) -> int:
    from .scoring.batch import score_file

    settings = _settings()
    stats = score_file(_enricher(settings), args.input, args.output, text_column=args.text_column,
                       batch=args.batch, progress=not args.quiet, max_text=settings.max_text, brand=args.brand,
                       brand_column=args.brand_column)
    why = ", ".join(f"{n} {code}" for code, n in sorted(stats["invalid_reasons"].items()))
    print(f"scored {stats['enriched']} tweets ({stats['invalid']} invalid{': ' + why if why else ''}; "
          f"each row's reason is in the output's error column) in {stats['seconds']:.2f}s "
          f"= {stats['tweets_per_s']:.1f} tweets/s -> {args.output}", file=sys.stderr)
    return 0


# -- demo -----------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(_worker_settings(), duration=args.duration, rate=args.rate, seed=args.seed, keep=args.keep,
                    final_wait=args.final_wait)


# -- model / rules / feedback ---------------------------------------------------------------------
def cmd_model_eval(args: argparse.Namespace) -> int:
    from .scoring.evaluate import main as eval_main

    settings = _settings()
    return eval_main(settings.model_dir if args.model_dir is None else args.model_dir, args.data,
                     text_column=args.text_column, label_column=args.label_column, limit=args.limit,
                     json_out=args.json)


def cmd_model_vocabulary(args: argparse.Namespace) -> int:
    from .scoring.evaluate import vocabulary_report

    model_dir = _settings().model_dir if args.model_dir is None else args.model_dir
    for line in vocabulary_report(model_dir, args.data, text_column=args.text_column, limit=args.limit):
        print(line)
    return 0


def cmd_rules_eval(args: argparse.Namespace) -> int:
    from .rules.evaluate import run

    return run(args)


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from .feedback_export import export_feedback

    settings = _settings()
    n = export_feedback(_need_broker(settings), settings, args.output, timeout=args.timeout)
    print(f"exported {n} feedback rows to {args.output}", file=sys.stderr)
    return 0


def cmd_alerts_backtest(args: argparse.Namespace) -> int:
    from .alerting import AlertConfigError, load_rules
    from .backtest import backtest, render

    settings = _settings()
    try:
        rules = load_rules(args.rules or settings.alert_rules)
    except AlertConfigError as exc:
        raise ConfigError(str(exc)) from None
    enricher = None if args.sentiment_from_labels else _enricher(settings)
    try:
        result = backtest(args.file, rules, enricher, labels=args.labels or args.sentiment_from_labels,
                          episode_floor=args.episode_floor, sentiment_from_labels=args.sentiment_from_labels)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    print(render(result))
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.http:
        from .bench_http import main as http_main

        return http_main(args)
    from .bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {k:<24} {d[1]} (default: {d[0] or 'unset'})"
                         for k, d in (ENV_DOCS | DELIVERY_ENV_DOCS).items())
    p = argparse.ArgumentParser(
        prog="badbuzz", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Real-time bad-buzz detection on tweet streams.",
        epilog=f"environment:\n{env_help}",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (Tansu, memory) in the foreground")
    s.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    s.add_argument("--verbose", action="store_true", help="show the broker's own log")
    s.set_defaults(func=cmd_broker)

    s = sub.add_parser("worker", help="run the Faust worker (embedded broker when BADBUZZ_BROKER is unset)")
    s.add_argument("--loglevel", help="log level (default: BADBUZZ_LOG_LEVEL)")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("produce", help="push tweets from a CSV/JSONL file to the input topic")
    s.add_argument("file", type=Path)
    s.add_argument("--topic", help="target topic (default: BADBUZZ_TOPIC_TWEETS)")
    s.add_argument("--text-column", default="text")
    s.add_argument("--id-column", help="id column (default: id, then tweet_id; generated stably when absent)")
    s.add_argument("--time-column", help="event time column (default: created_at)")
    s.add_argument("--brand", help="brand to set on every tweet")
    s.add_argument("--brand-column", help="column naming each row's brand, e.g. airline (\"US Airways\" -> usairways)")
    s.add_argument("--in-time-order", action="store_true",
                   help="send rows sorted by event time, as a live feed would (files are often newest first)")
    s.add_argument("--rate", type=float, help="messages per second (default: as fast as possible)")
    s.add_argument("--raw", action="store_true", help="send each line of the file unparsed as one message")
    s.set_defaults(func=cmd_produce)

    s = sub.add_parser("consume", help="print a topic's events as JSON lines")
    s.add_argument("topic")
    s.add_argument("--limit", type=int, help="stop after N events")
    s.add_argument("--timeout", type=float, default=10.0, help="stop after S seconds without events")
    s.add_argument("--from-beginning", action="store_true")
    s.set_defaults(func=cmd_consume)

    s = sub.add_parser("score", help="offline batch enrichment of a CSV/JSONL file (same code path as the agent)")
    s.add_argument("input", type=Path)
    s.add_argument("-o", "--output", type=Path, required=True, help="output .csv or .jsonl")
    s.add_argument("--text-column", default="text")
    s.add_argument("--batch", type=int, default=2048,
                   help="tweets enriched together; sorted by length inside, so larger chunks pad less")
    s.add_argument("--brand", help="brand of every row (its domain pack: topics and incidents)")
    s.add_argument("--brand-column", help="column naming each row's brand, e.g. airline")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("demo", help="embedded broker + worker + scenario simulator (chatter, then a bad-buzz storm)")
    s.add_argument("--duration", type=float, default=120.0, help="seconds of live traffic")
    s.add_argument("--rate", type=float, default=5.0, help="chatter tweets per second (the storm adds 6x that)")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--final-wait", type=float, default=100.0,
                   help="seconds to wait after the traffic for the last alert buckets to become final")
    s.add_argument("--keep", action="store_true",
                   help="leave the worker, its dashboard and the broker running after the traffic until Ctrl-C")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("model", help="sentiment model tools")
    msub = s.add_subparsers(dest="model_command", required=True)
    e = msub.add_parser("eval", help="accuracy, macro-recall, macro-F1, per-class scores, confusion matrix")
    e.add_argument("--data", type=Path, required=True, help="labeled CSV/JSONL")
    e.add_argument("--text-column", default="text")
    e.add_argument("--label-column", default="label")
    e.add_argument("--model-dir", type=Path, help="default: BADBUZZ_MODEL_DIR")
    e.add_argument("--limit", type=int)
    e.add_argument("--json", type=Path, help="also write the metrics as JSON")
    e.set_defaults(func=cmd_model_eval)
    v = msub.add_parser("vocabulary", help="share of words outside the model's vocabulary, per file (the "
                                           "vocabulary health rule's measure)")
    v.add_argument("data", type=Path, nargs="+", help="CSV/JSONL files with a text column")
    v.add_argument("--text-column", default="text")
    v.add_argument("--model-dir", type=Path, help="default: BADBUZZ_MODEL_DIR")
    v.add_argument("--limit", type=int, default=3000, help="rows read per file")
    v.set_defaults(func=cmd_model_vocabulary)

    s = sub.add_parser("rules", help="rule table tools")
    rsub = s.add_subparsers(dest="rules_command", required=True)
    e = rsub.add_parser("eval", help="precision/recall/F1 of the rule tables on ../shared/data")
    rules_eval_arguments(e)
    e.set_defaults(func=cmd_rules_eval)

    s = sub.add_parser("feedback", help="misclassification feedback tools")
    fsub = s.add_subparsers(dest="feedback_command", required=True)
    e = fsub.add_parser("export", help="write feedback (text + corrected label) as CSV for retraining")
    e.add_argument("-o", "--output", type=Path, required=True)
    e.add_argument("--timeout", type=float, default=3.0)
    e.set_defaults(func=cmd_feedback_export)

    s = sub.add_parser("alerts", help="alert engine tools")
    asub = s.add_subparsers(dest="alerts_command", required=True)
    e = asub.add_parser("backtest", help="replay a CSV/JSONL of tweets (created_at, brand) through the same "
                        "enrichment and alert engine, offline, in event time; print what would have been sent")
    e.add_argument("file", type=Path)
    e.add_argument("--labels", action="store_true",
                   help="score against surge episodes derived from the file's sentiment labels")
    e.add_argument("--sentiment-from-labels", action="store_true",
                   help="feed the human labels instead of the model (rules-only ceiling; implies --labels)")
    e.add_argument("--episode-floor", type=int, default=12, help="min negatives in a surge hour (default 12)")
    e.add_argument("--rules", type=Path, help="alert rules TOML (default: BADBUZZ_ALERT_RULES or the shipped one)")
    e.add_argument("--json", type=Path, help="also write the full result (alerts, episodes, score) as JSON")
    e.set_defaults(func=cmd_alerts_backtest)

    s = sub.add_parser("bench", help="benchmarks: model limit, score, pipeline, latency, memory, burst, scale-out")
    s.add_argument("--quick", action="store_true", help="shorter runs")
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--out", type=Path, default=Path("bench-results"))
    s.add_argument("--http", action="store_true",
                   help="instead: POST /predict latency on a worker under a fixed arrival rate (locust), "
                        "written to OUT/bench-predict.json")
    s.add_argument("--rate", type=float, default=100.0, help="--http: requests per second (default 100)")
    s.add_argument("--duration", type=float, default=60.0, help="--http: seconds of load (default 60)")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from .config import env, log_format
    from .logs import configure_logging, level_number

    args = build_parser().parse_args(argv)
    try:
        level = level_number(getattr(args, "loglevel", None) or env("BADBUZZ_LOG_LEVEL"))
        if args.command != "worker":  # a command's output is its result: its log shows warnings and errors only
            level = max(logging.WARNING, level)
        configure_logging(level, log_format())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())

"""``badbuzz bench``: throughput, latency, memory, duplicate bursts and scale-out, in one run.

Every figure is measured on this machine in the same run, so the ratios to the model limit are
meaningful even on a noisy shared host. Traffic comes from the scenario simulator; each text is
made unique (a short random tail) unless a run asks for duplicates on purpose.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from .broker import EmbeddedBroker, free_port
from .config import Settings
from .events import tweet_key
from .kafkaio import consume_topic, produce_messages
from .simulator import Scenario
from .workerproc import WorkerProcess, isolated_env

WORDS = ("today again now please seriously guys why ok still thanks flight bag app wifi seat team "
         "gate crew phone box fibre bill order refund hours week morning tonight").split()


def make_tweets(n: int, *, seed: int = 1, duplicate_share: float = 0.0) -> list[dict[str, Any]]:
    """``n`` scenario tweets (chatter and storm); ``duplicate_share`` of them repeat an earlier text."""
    sc = Scenario(seed=seed)
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    t0 = time.time() - 600
    for i in range(n):
        if out and rng.random() < duplicate_share:
            src = rng.choice(out)
            text = src["text"] if rng.random() < 0.5 else f"RT @{src['author']['handle']}: {src['text']}"
            tweet = {**src, "id": f"b{seed}-{i}", "text": text, "is_retweet": text.startswith("RT ")}
        else:
            base = sc.storm_tweet(t0 + i * 0.01) if i % 3 == 0 else sc.chatter(t0 + i * 0.01)
            tail = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
            tweet = {k: v for k, v in base.items() if k != "storm"} | {"id": f"b{seed}-{i}",
                                                                        "text": f"{base['text']} {tail}"}
        tweet.pop("created_at", None)
        out.append(tweet)
    return out


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# -- in-process figures -----------------------------------------------------------------------------
def model_limit(enricher: Any, texts: list[str]) -> dict[str, float]:
    """Raw onnxruntime throughput on pre-tokenized, length-sorted batches (the ceiling).

    Two ways to spend the cores are timed: one run at a time with all cores as intra-op threads, and
    one single-threaded run per core side by side (what the worker does by default). The ceiling is
    the faster of the two.
    """
    from .scoring.sentiment import SentimentModel
    from .scoring.text import normalize_for_model

    cores = os.cpu_count() or 1
    ids = enricher.model.encode([normalize_for_model(t) for t in texts])
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = {}
    for name, threads, parallel in (("sequential", cores, 1), ("parallel", 1, cores)):
        model = SentimentModel(enricher.model.model_dir, threads=threads, parallel=parallel, cache_size=0)
        size = model.batch_size
        batches = [[ids[i] for i in order[s : s + size]] for s in range(0, len(order), size)]
        runner = model._pool.map if model._pool else map
        start = time.perf_counter()
        list(runner(model.run_ids, batches))
        out[name] = len(texts) / (time.perf_counter() - start)
    return out


def score_run(enricher: Any, tweets: list[dict[str, Any]], workdir: Path) -> float:
    from .scoring.batch import score_file

    src = workdir / "bench-in.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(t) for t in tweets) + b"\n")
    enricher.model.cache.__init__(enricher.model.cache.maxsize)  # cold cache: no help from earlier runs
    stats = score_file(enricher, src, workdir / "bench-out.jsonl", progress=False)
    return stats["tweets_per_s"]


# -- pipeline figures -------------------------------------------------------------------------------
async def _drain(url: str, topic: str, n: int, timeout: float) -> list[Any]:
    return [r async for r in consume_topic(url, topic, limit=n, timeout=timeout, from_beginning=True)]


WARMUP = 256  # tweets sent to each fresh pipeline before timing (one full batch)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pipeline_run(url: str, name: str, tweets: list[dict[str, Any]], workdir: Path, *, workers: int = 1,
                 threads: int = 0, rate: float | None = None, pin: bool = False,
                 broker_pid: int | None = None) -> dict[str, Any]:
    """Start ``workers`` workers on fresh topics, push ``tweets`` (as fast as possible, or at ``rate``)
    and measure until every enriched event is back. ``pin`` gives worker i core i alone (the broker and the
    load generator still run anywhere). CPU per tweet of the workers and the broker (``broker_pid``) is
    taken over the timed part."""
    procs = []
    for i in range(workers):
        env = isolated_env(url, name, workdir / f"state-{name}-{i}", free_port())
        env["BADBUZZ_ORT_THREADS"] = str(threads)
        if threads:  # workers sharing the cores: one run at a time each
            env["BADBUZZ_ORT_PARALLEL"] = "1"
        cpus = {i % (os.cpu_count() or 1)} if pin else None
        procs.append(WorkerProcess(env, workdir / f"worker-{name}-{i}.log", cpus=cpus))
    try:
        for p in procs:
            p.start()
        if workers > 1:
            time.sleep(12)  # let the group settle on its final assignment before timing
        topic_in, topic_out = procs[0].env["BADBUZZ_TOPIC_TWEETS"], procs[0].env["BADBUZZ_TOPIC_ENRICHED"]
        msgs = [(tweet_key(t), orjson.dumps(t)) for t in tweets]
        # Warm-up, not timed: a fresh worker's first batches pay for onnxruntime's first runs of each
        # shape and the consumer's first fetches; the figures are about a worker in its steady state.
        warm = [(tweet_key(t), orjson.dumps(t)) for t in make_tweets(WARMUP, seed=99)]
        warm_ids = {orjson.loads(v)["id"] for _, v in warm}

        pids = [p.proc.pid for p in procs] + ([broker_pid] if broker_pid else [])
        cpu: list[float] = []

        async def run() -> tuple[float, list[Any]]:
            await produce_messages(url, topic_in, warm)
            await _drain(url, topic_out, len(warm), timeout=60)
            cpu.extend(cpu_seconds(pid) for pid in pids)
            start = time.time()
            consumer = asyncio.create_task(_drain(url, topic_out, len(warm) + len(msgs), timeout=60))
            await produce_messages(url, topic_in, msgs, rate=rate)
            records = await consumer
            for i, pid in enumerate(pids):
                cpu[i] = cpu_seconds(pid) - cpu[i]
            return start, [r for r in records if orjson.loads(r.value)["id"] not in warm_ids]

        start, records = asyncio.run(run())
        if len(records) < len(msgs):
            raise RuntimeError(f"{name}: only {len(records)}/{len(msgs)} enriched events came back")
        end_ms = max(r.timestamp for r in records)
        latencies = sorted(r.timestamp - orjson.loads(r.value)["event_time_ms"] for r in records)
        q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]  # noqa: E731
        return {
            "tweets_per_s": len(msgs) / (end_ms / 1000 - start),
            "latency_ms": {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99)},
            "peak_rss_mb": max(p.peak_rss_mb() for p in procs),
            "cpu_ms_per_tweet": {"workers": 1000 * sum(cpu[:workers]) / len(msgs),
                                 "broker": 1000 * sum(cpu[workers:]) / len(msgs)},
        }
    finally:
        for p in procs:
            p.stop()


def relay_run(url: str, name: str, tweets: list[dict[str, Any]], broker_pid: int, partitions: int = 4
              ) -> dict[str, Any]:
    """The floor under any Python worker: a bare aiokafka loop that reads the tweets already in a topic,
    parses each and writes it to another topic, with no model, rules or Faust. CPU per tweet of this
    process and of the broker over the loop."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from .broker import bootstrap, ensure_topics

    src, dst = f"bench-relay-{name}-in", f"bench-relay-{name}-out"

    async def run() -> dict[str, Any]:
        await ensure_topics(url, [src, dst], partitions)
        await produce_messages(url, src, [(tweet_key(t), orjson.dumps(t)) for t in tweets])
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), enable_auto_commit=False,
                                    fetch_max_wait_ms=50)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), linger_ms=5, acks="all")
        await consumer.start()
        await producer.start()
        try:
            tps = [TopicPartition(src, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            broker0, own0, start = cpu_seconds(broker_pid), time.process_time(), time.perf_counter()
            done = 0
            while done < len(tweets):
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                sent = []
                for records in batch.values():
                    for rec in records:
                        event = orjson.loads(rec.value)
                        event["relayed"] = True
                        sent.append(await producer.send(dst, value=orjson.dumps(event), key=rec.key))
                done += len(sent)
                await asyncio.gather(*sent)
            seconds = time.perf_counter() - start
            return {"tweets_per_s": len(tweets) / seconds,
                    "cpu_ms_per_tweet": {"relay": 1000 * (time.process_time() - own0) / len(tweets),
                                         "broker": 1000 * (cpu_seconds(broker_pid) - broker0) / len(tweets)}}
        finally:
            await consumer.stop()
            await producer.stop()

    return asyncio.run(run())


def main(args: Any) -> int:
    from .enrich import load_enricher
    from .scoring.text import normalize_for_model, retweeted_text

    settings = Settings.from_env()
    repeat = max(1, args.repeat)
    n = 1200 if args.quick else 3000
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="badbuzz-bench-"))
    enricher = load_enricher(settings)
    unique = make_tweets(n, seed=1)
    burst = make_tweets(n, seed=2, duplicate_share=0.4)
    # every tweet but the first repeats a scored text: the pipeline's own cost with the model out of the way
    all_hits = make_tweets(n, seed=4, duplicate_share=1.0)
    texts = [t["text"] for t in unique]
    runs: dict[str, list[Any]] = {k: [] for k in ("model_limit", "model_sequential", "model_parallel", "score",
                                                  "score_2634", "pipeline", "pipeline_cpu", "latency",
                                                  "burst", "rss", "all_hits", "relay", "workers_1",
                                                  "workers_2", "pinned_1", "pinned_2")}
    print(f"badbuzz bench: {n} tweets, {repeat} repeats, {os.cpu_count()} cores", flush=True)
    # Each repeat measures everything once, in this order, so that every ratio compares figures taken
    # within a couple of minutes of each other (a shared VM's speed drifts by 20-30% over an hour).
    with EmbeddedBroker() as broker:
        for i in range(repeat):
            limits = model_limit(enricher, texts)
            runs["model_sequential"].append(limits["sequential"])
            runs["model_parallel"].append(limits["parallel"])
            runs["model_limit"].append(max(limits.values()))
            runs["score"].append(score_run(enricher, unique, workdir))
            t0 = time.perf_counter()
            score_run(enricher, make_tweets(2634, seed=3), workdir)
            runs["score_2634"].append(time.perf_counter() - t0)
            bpid = broker.process.pid if broker.process else None
            sat = pipeline_run(broker.url, f"sat{i}", unique, workdir, broker_pid=bpid)
            runs["pipeline"].append(sat["tweets_per_s"])
            runs["pipeline_cpu"].append(sat["cpu_ms_per_tweet"])
            runs["rss"].append(sat["peak_rss_mb"])
            lat = pipeline_run(broker.url, f"lat{i}", unique[: n // 2], workdir, rate=0.5 * sat["tweets_per_s"])
            runs["latency"].append(lat["latency_ms"])
            runs["burst"].append(pipeline_run(broker.url, f"burst{i}", burst, workdir)["tweets_per_s"])
            runs["all_hits"].append(pipeline_run(broker.url, f"hits{i}", all_hits, workdir, broker_pid=bpid))
            if bpid:
                runs["relay"].append(relay_run(broker.url, f"{i}", unique * 5, bpid))  # enough for /proc ticks
            print(f"  run {i + 1}: model {runs['model_limit'][-1]:.0f}/s, score {runs['score'][-1]:.0f}/s, "
                  f"2634 tweets in {runs['score_2634'][-1]:.1f}s, pipeline {sat['tweets_per_s']:.0f}/s, "
                  f"p99 {lat['latency_ms']['p99']} ms at 50%, burst {runs['burst'][-1]:.0f}/s, "
                  f"rss {sat['peak_rss_mb']:.0f} MB, all cache hits {runs['all_hits'][-1]['tweets_per_s']:.0f}/s",
                  flush=True)
            if args.quick:
                continue
            runs["workers_1"].append(pipeline_run(broker.url, f"one{i}", unique, workdir, threads=1)["tweets_per_s"])
            runs["workers_2"].append(pipeline_run(broker.url, f"two{i}", unique, workdir, workers=2,
                                                  threads=1)["tweets_per_s"])
            # the scaled-down form of "each worker on its own cores": one core per worker
            runs["pinned_1"].append(pipeline_run(broker.url, f"pone{i}", unique, workdir, threads=1,
                                                 pin=True)["tweets_per_s"])
            runs["pinned_2"].append(pipeline_run(broker.url, f"ptwo{i}", unique, workdir, workers=2,
                                                 threads=1, pin=True)["tweets_per_s"])
            print(f"  scale-out {i + 1}: 1 worker {runs['workers_1'][-1]:.0f}/s, "
                  f"2 workers {runs['workers_2'][-1]:.0f}/s; one core each: {runs['pinned_1'][-1]:.0f}/s, "
                  f"{runs['pinned_2'][-1]:.0f}/s", flush=True)
    limit = median(runs["model_limit"])

    def ratio(num: str, den: str) -> float:
        """Median over repeats of each repeat's own ratio."""
        return median([a / b for a, b in zip(runs[num], runs[den], strict=True)])

    cores = os.cpu_count() or 1
    # CPU bounds. At saturation the pipeline spends `sat` ms of CPU per tweet (worker + broker); the cores
    # cannot deliver more than cores / sat tweets per second however well the work overlaps. With every
    # tweet a cache hit it spends `hit` ms (no model): `sat - hit` is the model's share, and a burst whose
    # texts repeat in a share d of tweets needs about (1 - d) * (sat - hit) + hit per tweet.
    sat_ms = [sum(c.values()) for c in runs["pipeline_cpu"]]
    hit_ms = [sum(h["cpu_ms_per_tweet"].values()) for h in runs["all_hits"]]
    dup_share = 1 - len({normalize_for_model(retweeted_text(t["text"])) for t in burst}) / len(burst)
    bound = {
        "saturation_cpu_ms_per_tweet": median(sat_ms), "cache_hit_cpu_ms_per_tweet": median(hit_ms),
        "pipeline_ratio": median([cores * 1000 / c / lim for c, lim in zip(sat_ms, runs["model_limit"], strict=True)]),
        "burst_duplicate_share": dup_share,
        "burst_ratio": median([c / ((1 - dup_share) * (c - h) + h) for c, h in zip(sat_ms, hit_ms, strict=True)]),
    }
    result = {
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": enricher.model_info, "tweets_per_run": n, "repeats": repeat,
        "model_limit_tweets_per_s": limit,
        "model_limit_by_strategy": {"sequential": median(runs["model_sequential"]),
                                    "parallel": median(runs["model_parallel"])},
        "score_tweets_per_s": median(runs["score"]), "score_ratio": ratio("score", "model_limit"),
        "score_2634_seconds": median(runs["score_2634"]),
        "pipeline_tweets_per_s": median(runs["pipeline"]), "pipeline_ratio": ratio("pipeline", "model_limit"),
        "latency_ms_at_50pct": {p: median([r[p] for r in runs["latency"]]) for p in ("p50", "p95", "p99")},
        "worker_peak_rss_mb": median(runs["rss"]),
        "burst_tweets_per_s": median(runs["burst"]), "burst_ratio": ratio("burst", "pipeline"),
        "pipeline_cpu_ms_per_tweet": {k: median([c[k] for c in runs["pipeline_cpu"]]) for k in ("workers", "broker")},
        "all_cache_hits": {"tweets_per_s": median([h["tweets_per_s"] for h in runs["all_hits"]]),
                           "cpu_ms_per_tweet": {k: median([h["cpu_ms_per_tweet"][k] for h in runs["all_hits"]])
                                                for k in ("workers", "broker")}},
        "relay_floor": ({"tweets_per_s": median([r["tweets_per_s"] for r in runs["relay"]]),
                         "cpu_ms_per_tweet": {k: median([r["cpu_ms_per_tweet"][k] for r in runs["relay"]])
                                              for k in ("relay", "broker")}} if runs["relay"] else None),
        "cpu_bound": bound,
        "scaleout": ({"one_worker": median(runs["workers_1"]), "two_workers": median(runs["workers_2"]),
                      "ratio": ratio("workers_2", "workers_1")} if runs["workers_1"] else None),
        "scaleout_own_core": ({"one_worker": median(runs["pinned_1"]), "two_workers": median(runs["pinned_2"]),
                               "ratio": ratio("pinned_2", "pinned_1")}
                              if runs["pinned_1"] else None),
        "raw": runs,
    }  # fmt: skip
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "bench.md").write_text(render_table(result))
    print(render_table(result))
    return 0


def render_table(r: dict[str, Any]) -> str:
    lim = r["model_limit_tweets_per_s"]
    lat = r["latency_ms_at_50pct"]
    rows = [
        ("model limit (onnxruntime, pre-tokenized, best strategy)", f"{lim:.0f} tweets/s", "1.00"),
        *[(f"model, {k} ({'cores' if k == 'parallel' else 'one'} run(s) at a time)", f"{v:.0f} tweets/s",
           f"{v / lim:.2f}") for k, v in r.get("model_limit_by_strategy", {}).items()],
        ("`badbuzz score`", f"{r['score_tweets_per_s']:.0f} tweets/s", f"{r['score_ratio']:.2f}"),
        ("`badbuzz score`, 2,634 tweets", f"{r['score_2634_seconds']:.1f} s", ""),
        ("pipeline at saturation (broker, alerting on)", f"{r['pipeline_tweets_per_s']:.0f} tweets/s",
         f"{r['pipeline_ratio']:.2f}"),
        ("latency at 50% load p50 / p95 / p99", f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} ms", ""),
        ("worker peak RSS", f"{r['worker_peak_rss_mb']:.0f} MB", ""),
        ("burst, 40% duplicates", f"{r['burst_tweets_per_s']:.0f} tweets/s", f"{r['burst_ratio']:.2f} x no-dup"),
    ]
    if r.get("all_cache_hits"):
        h, c, b = r["all_cache_hits"], r["pipeline_cpu_ms_per_tweet"], r["cpu_bound"]
        cores = r["machine"]["cores"]
        rows += [
            ("CPU per tweet at saturation, worker + broker",
             f"{c['workers']:.2f} + {c['broker']:.2f} ms", ""),
            ("pipeline, every tweet a cache hit (no model): throughput; worker + broker CPU per tweet",
             f"{h['tweets_per_s']:.0f} tweets/s; {h['cpu_ms_per_tweet']['workers']:.2f} + "
             f"{h['cpu_ms_per_tweet']['broker']:.2f} ms", ""),
        ]
        if r.get("relay_floor"):
            f = r["relay_floor"]
            rows.append(("bare aiokafka relay, no Faust/model/rules: throughput; relay + broker CPU per tweet",
                         f"{f['tweets_per_s']:.0f} tweets/s; {f['cpu_ms_per_tweet']['relay']:.3f} + "
                         f"{f['cpu_ms_per_tweet']['broker']:.3f} ms", ""))
        rows += [
            ("CPU bound of the pipeline: cores / CPU per tweet at saturation (no core ever idle)",
             f"{cores * 1000 / b['saturation_cpu_ms_per_tweet']:.0f} tweets/s", f"{b['pipeline_ratio']:.2f}"),
            (f"CPU bound of the burst ratio ({b['burst_duplicate_share']:.0%} of texts repeated; the model's "
             "share of the CPU skipped for them)", "", f"{b['burst_ratio']:.2f} x no-dup"),
        ]
    if r.get("scaleout"):
        s = r["scaleout"]
        rows.append(("1 vs 2 workers, 4 partitions (1 ORT thread each)",
                     f"{s['one_worker']:.0f} vs {s['two_workers']:.0f} tweets/s", f"{s['ratio']:.2f} x"))
    if r.get("scaleout_own_core"):
        s = r["scaleout_own_core"]
        rows.append(("1 vs 2 workers, 4 partitions, each worker pinned to a core of its own",
                     f"{s['one_worker']:.0f} vs {s['two_workers']:.0f} tweets/s", f"{s['ratio']:.2f} x"))
    out = [f"badbuzz bench: {r['machine']['cores']} cores, {r['tweets_per_run']} tweets per run, medians of "
           f"{r['repeats']} runs, model {r['model']['name']} {r['model']['version']}", "",
           "| measure | value | ratio |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out) + "\n"




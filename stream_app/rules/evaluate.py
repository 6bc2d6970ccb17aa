"""``badbuzz rules eval``: measure the rule tables on the labeled data in ``../shared/data``.

Four tasks (see README.md for the label mappings):

* ``airline_incident`` - ``airline_train.csv`` ``negativereason`` mapped onto the airline incident
  taxonomy ("Can't Tell" and rows without a reason excluded); macro-F1 over the 8 incident types.
* ``is_claim`` - ``en_complaints_twitter_2019.csv`` ``is_complaint`` (human labels); F1 of the claim class.
* ``telecom_subject`` - ``en_uk_mobile_operators_tweets.csv`` ``subject`` (human labels); the engine's
  strongest telecom topic mapped to a subject; macro-F1 over the 6 subjects other than "Other".
* ``fr_incident`` - ``french_free_telecom_tweets.csv`` ``silver_incident_type``: SILVER labels made by an
  LLM pipeline, not by people (weak labels); macro-F1 over network / billing / subscription.

The airline report adds a line for the rows whose ``negativereason_confidence`` is 1 (every CrowdFlower
contributor chose that reason): the same predictions, read on labels no annotator disputed. It tells rule
errors from label disagreement; the target is measured on every row.

Every dataset keeps a fixed held-out part (``stream_app.datasets.is_heldout`` on the row key, 20 %)
that was not looked at while writing the rules; ``--split`` picks dev, heldout or all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_app import datasets

from .engine import RuleEngine, RuleResult

NONE = "none"

#: airline_train.csv negativereason -> airline incident type ("Can't Tell" is excluded)
AIRLINE_REASON_MAP = {
    "Late Flight": "delay",
    "Cancelled Flight": "cancellation",
    "Lost Luggage": "baggage",
    "Damaged Luggage": "baggage",
    "Customer Service Issue": "customer_service",
    "Flight Booking Problems": "booking",
    "Bad Flight": "inflight",
    "Flight Attendant Complaints": "crew",
    "longlines": "queues",
}
AIRLINE_CLASSES = ("delay", "cancellation", "baggage", "customer_service", "booking", "inflight", "crew", "queues")

#: engine telecom topic -> en_uk_mobile_operators_tweets.csv subject (the strongest topic decides;
#: no topic, or a topic not listed here such as "fraud", is "Other")
TELECOM_TOPIC_TO_SUBJECT = {
    "network": "Network",
    "broadband": "Broadband",
    "billing": "Contract",
    "subscription": "Contract",
    "device": "Device",
    "delivery": "Device",
    "customer_service": "Customer Service",
    "promotion": "Promotion",
}
TELECOM_CLASSES = ("Network", "Broadband", "Contract", "Device", "Customer Service", "Promotion")

#: french_free_telecom_tweets.csv silver_incident_type -> incident type ("information"/"autre" -> none)
FR_SILVER_MAP = {
    "panne": "network",
    "facturation": "billing",
    "abonnement": "subscription",
    "resiliation": "subscription",
    "information": NONE,
    "autre": NONE,
}
#: engine incident -> silver scheme (the silver scheme folds box, installation and line problems into "panne")
FR_INCIDENT_TO_SILVER = {
    "network": "network",
    "device": "network",
    "delivery": "network",
    "billing": "billing",
    "subscription": "subscription",
    "customer_service": NONE,
}
FR_CLASSES = ("network", "billing", "subscription")


@dataclass(frozen=True)
class Example:
    key: str
    text: str
    gold: str
    agreed: bool | None = None  # every annotator gave this label (where the data says so)


@dataclass(frozen=True)
class Task:
    name: str
    file: str
    description: str
    classes: tuple[str, ...]
    rows: Callable[[Path], Iterable[Example]]
    predict: Callable[[RuleEngine, str, dict[str, float] | None], str]
    report_extra: tuple[str, ...] = ()
    sentiment: bool = False  # scored as the pipeline does: rules + the sentiment model's probabilities


def _airline_rows(root: Path) -> Iterable[Example]:
    for row in datasets.read_csv(root / "airline_train.csv"):
        gold = AIRLINE_REASON_MAP.get(row["negativereason"])
        if gold:
            yield Example(row["tweet_id"], row["text"], gold, agreed=_agreed(row["negativereason_confidence"]))


def _agreed(confidence: str) -> bool | None:
    """CrowdFlower's label confidence is 1 when every contributor chose the label."""
    try:
        return float(confidence) >= 0.999
    except ValueError:
        return None


def _airline_predict(engine: RuleEngine, text: str, probs: dict[str, float] | None) -> str:
    return engine.evaluate(text, lang="en", pack="airline", sentiment_label="negative").incident or NONE


def _claim_rows(root: Path) -> Iterable[Example]:
    for row in datasets.read_csv(root / "en_complaints_twitter_2019.csv"):
        yield Example(row["tweet_id"], row["text"], "claim" if row["is_complaint"] == "1" else "no_claim")


def _claim_predict(engine: RuleEngine, text: str, probs: dict[str, float] | None) -> str:
    label = max(probs, key=probs.__getitem__) if probs else "neutral"
    return "claim" if engine.evaluate(text, lang="en", sentiment_label=label, sentiment_probs=probs).is_claim \
        else "no_claim"


def _telecom_rows(root: Path) -> Iterable[Example]:
    for row in datasets.read_csv(root / "en_uk_mobile_operators_tweets.csv"):
        yield Example(f"{row['created_at']}|{row['text']}", row["text"], row["subject"])


def telecom_subject(result: RuleResult) -> str:
    if not result.topics:
        return "Other"
    return TELECOM_TOPIC_TO_SUBJECT.get(result.topics[0], "Other")


def _telecom_predict(engine: RuleEngine, text: str, probs: dict[str, float] | None) -> str:
    return telecom_subject(engine.evaluate(text, lang="en", pack="telecom"))


def _fr_rows(root: Path) -> Iterable[Example]:
    for row in datasets.read_csv(root / "french_free_telecom_tweets.csv"):
        gold = FR_SILVER_MAP.get(row["silver_incident_type"])
        if gold:
            yield Example(row["tweet_id"], row["text"], gold)


def _fr_predict(engine: RuleEngine, text: str, probs: dict[str, float] | None) -> str:
    incident = engine.evaluate(text, lang="fr", pack="telecom", sentiment_label="negative").incident
    return FR_INCIDENT_TO_SILVER.get(incident or NONE, NONE)


TASKS = (
    Task("airline_incident", "airline_train.csv", "airline negativereason -> incident (human labels)",
         AIRLINE_CLASSES, _airline_rows, _airline_predict, (NONE,)),
    Task("is_claim", "en_complaints_twitter_2019.csv", "is_complaint -> is_claim (human labels)",
         ("claim",), _claim_rows, _claim_predict, ("no_claim",), sentiment=True),
    Task("telecom_subject", "en_uk_mobile_operators_tweets.csv", "UK operators subject -> telecom topic (human)",
         TELECOM_CLASSES, _telecom_rows, _telecom_predict, ("Other",)),
    Task("fr_incident", "french_free_telecom_tweets.csv",
         "Free silver_incident_type -> incident (SILVER LLM labels: weak)", FR_CLASSES, _fr_rows, _fr_predict,
         (NONE,)),
)
TARGETS = {"airline_incident": 0.70, "is_claim": 0.78, "telecom_subject": 0.60, "fr_incident": 0.60}


def prf(gold: list[str], pred: list[str], label: str) -> dict[str, float]:
    tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p == label)
    fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != label and p == label)
    fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p != label)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def score(task: Task, gold: list[str], pred: list[str]) -> dict[str, object]:
    per_class = {c: prf(gold, pred, c) for c in (*task.classes, *task.report_extra)}
    main = [per_class[c]["f1"] for c in task.classes]
    macro = sum(main) / len(main) if main else 0.0
    # macro over every class incl. the extra ones (binary macro-F1 for is_claim)
    every = [per_class[c]["f1"] for c in per_class]
    accuracy = sum(1 for g, p in zip(gold, pred, strict=True) if g == p) / len(gold) if gold else 0.0
    return {"n": len(gold), "macro_f1": macro, "macro_f1_all_classes": sum(every) / len(every),
            "accuracy": accuracy, "per_class": per_class}


def run_task(engine: RuleEngine, task: Task, root: Path, split: str, model: Any = None) -> dict[str, object] | None:
    """Score one task on a split; ``model`` (a SentimentModel) feeds the tasks that use sentiment."""
    path = root / task.file
    if not path.exists():
        return None
    rows = [ex for ex in task.rows(root)
            if split == "all" or datasets.is_heldout(ex.key) == (split == "heldout")]
    probs: list[dict[str, float] | None] = [None] * len(rows)
    if task.sentiment and model is not None and rows:
        matrix = model.probs([ex.text for ex in rows])
        probs = [dict(zip(model.labels, map(float, row), strict=True)) for row in matrix]
    pred = [task.predict(engine, ex.text, p) for ex, p in zip(rows, probs, strict=True)]
    res = score(task, [ex.gold for ex in rows], pred)
    agreed = [i for i, ex in enumerate(rows) if ex.agreed]
    if agreed:  # the same predictions, read on the labels no annotator disputed (not what the target uses)
        res["agreed"] = score(task, [rows[i].gold for i in agreed], [pred[i] for i in agreed])
    return res


def format_report(task: Task, split: str, res: dict[str, object]) -> str:
    lines = [f"== {task.name} [{split}] n={res['n']}  ({task.description})"]
    lines.append(f"   {'class':<18} {'prec':>6} {'rec':>6} {'f1':>6} {'support':>8}")
    per_class: dict[str, dict[str, float]] = res["per_class"]  # type: ignore[assignment]
    for cls, m in per_class.items():
        mark = "" if cls in task.classes else "  (not in macro)"
        lines.append(
            f"   {cls:<18} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} {int(m['support']):8d}{mark}"
        )
    target = TARGETS.get(task.name)
    head = "F1(claim)" if task.name == "is_claim" else "macro-F1"
    lines.append(f"   {head} = {res['macro_f1']:.3f}  (target >= {target})   macro-F1 all classes = "
                 f"{res['macro_f1_all_classes']:.3f}   accuracy = {res['accuracy']:.3f}")
    agreed: dict[str, Any] | None = res.get("agreed")  # type: ignore[assignment]
    if agreed:
        share = agreed["n"] / res["n"] if res["n"] else 0.0
        f1s = " ".join(f"{c} {m['f1']:.2f}" for c, m in agreed["per_class"].items() if c in task.classes)
        lines.append(f"   labels every annotator agreed on (n={agreed['n']}, {share:.0%}): {head} = "
                     f"{agreed['macro_f1']:.3f}   accuracy = {agreed['accuracy']:.3f}   [{f1s}]")
    return "\n".join(lines)


def bench(engine: RuleEngine | None = None, texts: list[str] | None = None, repeat: int = 3) -> dict[str, float]:
    """Per-tweet rule time in milliseconds (median and p95 over the texts, best of ``repeat`` runs)."""
    engine = engine or RuleEngine.load()
    if texts is None:
        texts = []
        root = datasets.data_dir()
        for name, pack, lang in (("airline_train.csv", "airline", "en"),
                                 ("french_free_telecom_tweets.csv", "telecom", "fr")):
            if (root / name).exists():
                texts.extend((t, pack, lang) for t in (r["text"] for r in datasets.read_csv(root / name)))  # type: ignore[misc]
        if not texts:
            texts = [(t, "airline", None) for t in _SAMPLE_TEXTS] * 200  # type: ignore[misc]
    items = [t if isinstance(t, tuple) else (t, None, None) for t in texts][:5000]
    times: list[float] = []
    for _ in range(repeat):
        run: list[float] = []
        for text, pack, lang in items:
            t0 = time.perf_counter()
            engine.evaluate(text, pack=pack, lang=lang)
            run.append(time.perf_counter() - t0)
        if not times or sum(run) < sum(times):
            times = run
    times.sort()
    return {"n": len(times), "median_ms": statistics.median(times) * 1000,
            "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000, "mean_ms": sum(times) / len(times) * 1000}


_SAMPLE_TEXTS = (
    "@united my flight was cancelled and now my bag is lost, I want a refund!!!",
    "@free toujours pas d'internet depuis 3 jours, je veux être remboursé",
    "Thanks @delta for the smooth flight, great crew",
    "@EE no signal at all in my area since this morning, what is going on?",
)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``badbuzz rules eval`` (shared by the CLI's subcommand and ``python -m``)."""
    parser.add_argument("--data-dir", type=Path, default=None, help="labeled data folder (default: ../shared/data)")
    parser.add_argument("--rules-dir", type=Path, default=None, help="rule tables (default: shipped tables)")
    parser.add_argument("--split", choices=("heldout", "dev", "all", "both"), default="both",
                        help="rows to score: dev (used to write the rules), heldout (untouched), all, or both")
    parser.add_argument("--task", action="append", choices=[t.name for t in TASKS], help="only these tasks")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    parser.add_argument("--bench", action="store_true", help="measure the per-tweet rule time instead")
    parser.add_argument("--no-model", action="store_true",
                        help="text-only rules: do not feed the sentiment model's probabilities to is_claim")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="badbuzz rules eval", description=__doc__.split("\n")[0])
    return run(add_arguments(parser).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    engine = RuleEngine.load(args.rules_dir)
    if args.bench:
        res = bench(engine)
        print(f"rules {engine.version}: {res['n']} tweets, median {res['median_ms']:.4f} ms/tweet, "
              f"p95 {res['p95_ms']:.4f} ms, mean {res['mean_ms']:.4f} ms (target median <= 0.2 ms)")
        if args.json:
            args.json.write_text(json.dumps({"rules_version": engine.version, "bench": res}, indent=2))
        return 0

    root = args.data_dir or datasets.data_dir()
    if not root.is_dir():
        print(f"no labeled data at {root}: nothing to evaluate (skipped)")
        return 0
    splits = ("dev", "heldout") if args.split == "both" else (args.split,)
    model = None
    if not args.no_model:
        from stream_app.config import DEFAULT_MODEL_DIR
        from stream_app.scoring.sentiment import SentimentModel

        model = SentimentModel(DEFAULT_MODEL_DIR, cache_size=0)
    out: dict[str, object] = {"rules_version": engine.version, "data_dir": str(root), "results": {},
                              "sentiment_model": model.name if model else None}
    results: dict[str, dict[str, object]] = out["results"]  # type: ignore[assignment]
    for task in TASKS:
        if args.task and task.name not in args.task:
            continue
        for split in splits:
            res = run_task(engine, task, root, split, model)
            if res is None:
                print(f"== {task.name}: {task.file} not found in {root} (skipped)")
                break
            results.setdefault(task.name, {})[split] = res
            print(format_report(task, split, res))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

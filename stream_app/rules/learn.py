"""Learn weighted claim cues from the dev part of the labeled complaints data.

    python -m stream_app.rules.learn          # writes tables/en/generic.claims.toml and [claim] in meta.toml

The hand-written rules name the obvious claim cues; a complaint is also told by many small words
("still", "waiting", "why", "thanks" against) that no one would list by hand. This fits an
L1-regularized logistic regression on the dev split only (the held-out split stays untouched) with
three kinds of input: word and two-word cues, the claim score of the hand-written rules, and the
sentiment model's P(negative) and P(positive). The fit is rescaled so the hand-written score keeps
weight 1, so the result is plain rule-table data: a ``<pack>.claims.toml`` of keyword/phrase rules
grouped by weight, plus ``negative_sentiment``, ``positive_sentiment`` and ``threshold`` in
``meta.toml [claim]``. Regularization and threshold are chosen by 5-fold cross-validation on dev.
Needs scikit-learn (``pip install -e '.[train]'``) and ``../shared/data``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from stream_app import datasets

from .config import DEFAULT_DIR, RuleConfigError, parse_table
from .engine import RuleEngine
from .evaluate import TASKS
from .normalize import collapse, normalize_raw, squeeze, tokenize

LEARNED_PREFIX = "en.claim.learned."
MIN_DF = 5
STEP = 0.05  # weights are rounded to this step and grouped into one rule per value
GRID_C = (0.25, 0.5, 1.0, 2.0)
GRID_OFFSET = tuple(np.round(np.arange(-0.6, 0.61, 0.1), 2))


def cue_tokens(text: str) -> list[str]:
    """The words the engine matches (normalized, elongation collapsed, hashtags as words), no handles or URLs."""
    raw = tokenize(normalize_raw(text))
    # an elongated word ("waiiiting") matches a keyword through its squeezed form, as in the engine
    toks = [squeeze(t) if collapse(t) != t else t for t in raw]
    words = [t.lstrip("#") for t in toks if t[0] != "@" and t.strip("#")]
    pairs = [f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False) if a[0] not in "@#" and b[0] not in "@#"]
    return words + pairs


def hand_claim_score(engine: RuleEngine, text: str, claims: dict[str, float]) -> float:
    """Claim score of the hand-written rules alone (no learned cues, no sentiment)."""
    matched = engine.evaluate(text, lang="en").matched
    return sum(claims[r] for r in matched if not r.startswith(LEARNED_PREFIX))


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum(pred & y))
    return 0.0 if tp == 0 else 2 * tp / (float(np.sum(pred)) + float(np.sum(y)))


def fit(texts: list[str], y: np.ndarray, hand: np.ndarray, probs: np.ndarray, seed: int = 13) -> dict:
    """Cross-validated L1 logistic regression; returns the chosen model rescaled to rule-table units."""
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    docs = [cue_tokens(t) for t in texts]
    extra = np.c_[hand, probs[:, 0], probs[:, 2]]

    def design(vec: CountVectorizer, idx: np.ndarray, fit_vocab: bool) -> sparse.csr_matrix:
        sub = [docs[i] for i in idx]
        words = vec.fit_transform(sub) if fit_vocab else vec.transform(sub)
        return sparse.hstack([words, sparse.csr_matrix(extra[idx])]).tocsr()

    def new_vec() -> CountVectorizer:
        return CountVectorizer(analyzer=lambda d: d, binary=True, min_df=MIN_DF)

    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    scores: dict[tuple[float, float], list[float]] = defaultdict(list)
    for train, test in folds:
        vec = new_vec()
        x_train, x_test = design(vec, train, True), design(vec, test, False)
        for c in GRID_C:
            model = LogisticRegression(penalty="l1", C=c, solver="liblinear", max_iter=5000,
                                       random_state=seed).fit(x_train, y[train])
            margin = model.decision_function(x_test)
            for off in GRID_OFFSET:
                scores[(c, float(off))].append(_f1(y[test], margin >= off))
    (c, off), cv = max(((k, float(np.mean(v))) for k, v in scores.items()), key=lambda kv: kv[1])
    vec = new_vec()
    everything = np.arange(len(y))
    model = LogisticRegression(penalty="l1", C=c, solver="liblinear", max_iter=5000, random_state=seed).fit(
        design(vec, everything, True), y)
    coef = model.coef_[0]
    a_hand, a_neg, a_pos = coef[-3:]
    if a_hand <= 0:
        raise SystemExit("the hand-written claim score got a non-positive weight: the rules need a look")
    vocab = vec.get_feature_names_out()
    cues = {str(w): float(v / a_hand) for w, v in zip(vocab, coef[:-3], strict=True) if v != 0}
    return {
        "C": c, "offset": off, "cv_f1": cv, "cues": cues,
        "negative_sentiment": float(a_neg / a_hand), "positive_sentiment": float(a_pos / a_hand),
        "threshold": float((off - model.intercept_[0]) / a_hand), "rows": len(y),
    }


def _valid(term: str) -> bool:
    return all(tokenize(w) == [w] for w in term.split())


def render(learned: dict) -> str:
    groups: dict[float, list[str]] = defaultdict(list)
    for term, w in learned["cues"].items():
        value = round(round(w / STEP) * STEP, 2)
        if value != 0 and _valid(term):
            groups[value].append(term)
    lines = [
        "# GENERATED by `python -m stream_app.rules.learn` -- edit by re-running it, or move a cue into a",
        "# hand-written table. Claim cues learned on the dev part of en_complaints_twitter_2019.csv",
        f"# ({learned['rows']} tweets; the held-out 20% was not used): L1 logistic regression, C={learned['C']},",
        f"# chosen by 5-fold cross-validation on dev (CV F1 of the claim class {learned['cv_f1']:.3f}).",
        "# Each rule adds its weight to the claim score when one of its words or phrases occurs; a",
        "# negative weight is evidence against a claim. Units: the hand-written rules' claim score.",
        'lang = "en"',
        'pack = "generic"',
        'description = "Learned claim cues (English)"',
    ]
    for value in sorted(groups, reverse=True):
        terms = sorted(groups[value])
        rid = f"{LEARNED_PREFIX}{'p' if value > 0 else 'n'}{round(abs(value) * 100):03d}"  # p045 = +0.45
        lines += ["", "[[rule]]", f'id = "{rid}"', f'label = "Learned claim cue ({value:+.2f})"', 'kind = "claim"',
                  f"weight = {value:.2f}"]
        words = [t for t in terms if " " not in t]
        phrases = [t for t in terms if " " in t]
        if words:
            lines.append("keywords = [" + ", ".join(f'"{t}"' for t in words) + "]")
        if phrases:
            lines.append("phrases = [" + ", ".join(f'"{t}"' for t in phrases) + "]")
    return "\n".join(lines) + "\n"


def update_meta(path: Path, learned: dict) -> None:
    """Rewrite the ``[claim.en]`` table of ``meta.toml`` (the rest of the file stays as written)."""
    text = path.read_text()
    block = (
        "[claim.en]\n"
        "# learned by `python -m stream_app.rules.learn` with tables/en/generic.claims.toml (see there)\n"
        f"threshold = {learned['threshold']:.3f}\n"
        f"negative_sentiment = {learned['negative_sentiment']:.3f}  # times P(negative)\n"
        f"positive_sentiment = {learned['positive_sentiment']:.3f}  # times P(positive)\n\n"
    )
    old = re.search(r"^\[claim\.en\]\n(?:(?!\[).*\n)*", text, flags=re.M)
    if old is not None:
        text = text[: old.start()] + block + text[old.end():]
    else:
        anchor = re.search(r"^\[urgency\]", text, flags=re.M)
        if anchor is None:
            raise SystemExit(f"{path}: no [urgency] table to insert [claim.en] before")
        text = text[: anchor.start()] + block + text[anchor.start():]
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stream_app.rules.learn", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="datasets folder (default ../shared/data)")
    ap.add_argument("--rules", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--model", default=None, help="sentiment model folder (default: the shipped one)")
    args = ap.parse_args(argv)
    from stream_app.config import DEFAULT_MODEL_DIR
    from stream_app.scoring.sentiment import SentimentModel

    root = args.data or datasets.data_dir()
    task = next(t for t in TASKS if t.name == "is_claim")
    rows = [ex for ex in task.rows(root) if not datasets.is_heldout(ex.key)]
    engine = RuleEngine.load(args.rules)
    claims = {r.id: r.claim for t in engine.tables.values() for r in t.rules}
    texts = [ex.text for ex in rows]
    y = np.array([ex.gold == "claim" for ex in rows])
    hand = np.array([hand_claim_score(engine, t, claims) for t in texts])
    model = SentimentModel(args.model or DEFAULT_MODEL_DIR, cache_size=0)
    probs = model.probs(texts)
    learned = fit(texts, y, hand, probs)
    out = args.rules / "en" / "generic.claims.toml"
    out.write_text(render(learned))
    try:
        parse_table(out)
    except RuleConfigError as exc:
        print(f"generated table does not load: {exc}", file=sys.stderr)
        return 1
    update_meta(args.rules / "meta.toml", learned)
    print(f"{out}: {len(learned['cues'])} cues; C={learned['C']} CV F1={learned['cv_f1']:.3f}; "
          f"threshold={learned['threshold']:.3f} negative_sentiment={learned['negative_sentiment']:.3f} "
          f"positive_sentiment={learned['positive_sentiment']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

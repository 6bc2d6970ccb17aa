"""The learned-cue writer produces tables the loader accepts and rewrites meta.toml in place."""

from __future__ import annotations

import shutil
from pathlib import Path

from stream_app.rules import RuleEngine
from stream_app.rules.config import DEFAULT_DIR, parse_meta, parse_table
from stream_app.rules.learn import cue_tokens, render, update_meta

LEARNED = {"C": 0.5, "offset": 0.0, "cv_f1": 0.8, "rows": 10, "negative_sentiment": 2.0, "positive_sentiment": -0.5,
           "threshold": 2.5, "cues": {"refund": 0.52, "still waiting": 0.31, "thanks": -0.4, "tiny": 0.01, "é$": 1.0}}


def test_cue_tokens_match_the_engine_tokens() -> None:
    toks = cue_tokens("@Acme STILL waiiiting for my #refund http://x.co/1")
    assert "still" in toks and "waiting" in toks and "refund" in toks and "still waiting" in toks
    assert not any(t.startswith("@") or "http" in t for t in toks)


def test_render_groups_cues_by_weight_and_loads(tmp_path: Path) -> None:
    root = tmp_path / "tables"
    shutil.copytree(DEFAULT_DIR, root)
    out = root / "en" / "generic.claims.toml"
    out.write_text(render(LEARNED), encoding="utf-8")
    table = parse_table(out)
    weights = {r.id: r.weight for r in table.rules}
    assert weights == {"en.claim.learned.p050": 0.5, "en.claim.learned.p030": 0.3, "en.claim.learned.n040": -0.4}
    assert next(r for r in table.rules if r.weight == 0.3).phrases == ("still waiting",)
    update_meta(root / "meta.toml", LEARNED)
    update_meta(root / "meta.toml", LEARNED | {"threshold": 3.0})  # replaces, does not duplicate
    meta = parse_meta(root / "meta.toml")
    assert meta.claim_by_lang["en"] == (3.0, 2.0, -0.5)
    assert (root / "meta.toml").read_text(encoding="utf-8").count("[claim.en]") == 1
    engine = RuleEngine.load(root)
    assert engine.evaluate("@acme where is my refund", lang="en", sentiment_label="negative",
                           sentiment_probs={"negative": 0.9, "neutral": 0.1, "positive": 0.0}).is_claim

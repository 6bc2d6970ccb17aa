"""Unit tests of the rule engine (own example tweets, no dataset rows)."""

from __future__ import annotations

import shutil
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.rules import RuleConfigError, RuleEngine, RuleResult
from stream_app.rules.config import DEFAULT_DIR, check_regex
from stream_app.rules.normalize import detect_lang, normalize, tokenize


@pytest.fixture(scope="module")
def engine() -> RuleEngine:
    return RuleEngine.load()


def _copy_tables(tmp_path: Path) -> Path:
    dst = tmp_path / "tables"
    shutil.copytree(DEFAULT_DIR, dst)
    return dst


# ----------------------------------------------------------------------------------- loading
def test_load_default(engine: RuleEngine) -> None:
    with open(DEFAULT_DIR / "meta.toml", "rb") as f:
        assert engine.version == tomllib.load(f)["version"]
    assert {"generic", "airline", "telecom"} <= set(engine.packs)


def test_packs_for(engine: RuleEngine) -> None:
    assert engine.packs_for("united") == ("generic", "airline")
    assert engine.packs_for("@AirParadis") == ("generic", "airline")
    assert engine.packs_for("freebox") == ("generic", "telecom")
    assert engine.packs_for("vodafone") == ("generic", "telecom")
    assert engine.packs_for("some_unknown_brand") == ("generic",)
    assert engine.packs_for(None) == ("generic",)


def test_broken_toml(tmp_path: Path) -> None:
    root = _copy_tables(tmp_path)
    (root / "en" / "airline.toml").write_text("lang = 'en'\n[[rule]\nid=", encoding="utf-8")
    with pytest.raises(RuleConfigError, match=r"airline\.toml: syntax"):
        RuleEngine.load(root)


_PART = 'lang = "en"\npack = "airline"\n[[rule]]\nid = "x.part"\nlabel = "P"\nkind = "topic"\ntopic = "queues"\n' \
        'weight = 9.0\nkeywords = ["zzqueue"]\n'


def test_part_file_adds_rules_to_its_pack(tmp_path: Path) -> None:
    root = _copy_tables(tmp_path)
    (root / "en" / "airline.extra.toml").write_text(_PART, encoding="utf-8")
    res = RuleEngine.load(root).evaluate("@united the zzqueue again", pack="airline", lang="en",
                                         sentiment_label="negative")
    assert res.incident == "queues" and "x.part" in res.matched


@pytest.mark.parametrize(
    ("name", "body", "match"),
    [
        ("airline.extra.toml", _PART + 'incidents = ["queues"]\n', r"airline\.extra\.toml: .*incidents"),
        ("shipping.extra.toml", _PART.replace('"airline"', '"shipping"'), r"no shipping\.toml"),
        ("airline.extra.toml", _PART.replace('"airline"', '"telecom"'), r"'telecom' does not match"),
    ],
)
def test_part_file_errors(tmp_path: Path, name: str, body: str, match: str) -> None:
    root = _copy_tables(tmp_path)
    (root / "en" / name).write_text(body, encoding="utf-8")
    with pytest.raises(RuleConfigError, match=match):
        RuleEngine.load(root)


def test_claim_calibration_is_per_language(tmp_path: Path) -> None:
    root = _copy_tables(tmp_path)
    meta = (root / "meta.toml").read_text(encoding="utf-8")
    start = meta.index("[claim.en]")
    end = meta.index("[urgency]")
    (root / "meta.toml").write_text(meta[:start] + "[claim.en]\nthreshold = 1.0\nnegative_sentiment = 2.0\n\n"
                                    + meta[end:], encoding="utf-8")
    engine = RuleEngine.load(root)
    angry = {"negative": 0.95, "neutral": 0.04, "positive": 0.01}
    calm = {"negative": 0.05, "neutral": 0.9, "positive": 0.05}
    text = "@acme hello there"
    assert engine.evaluate(text, lang="en", sentiment_label="negative", sentiment_probs=angry).is_claim
    assert not engine.evaluate(text, lang="en", sentiment_label="neutral", sentiment_probs=calm).is_claim
    # French has no [claim.fr]: sentiment does not make a claim there, the [claim] threshold applies
    assert not engine.evaluate("@free bonjour", lang="fr", sentiment_label="negative", sentiment_probs=angry).is_claim


def test_shipped_learned_claim_cues(engine: RuleEngine) -> None:
    learned = [r for t in engine.tables.values() for r in t.rules if r.id.startswith("en.claim.learned.")]
    assert learned and all(r.kind == "claim" for r in learned)
    assert "en" in engine.meta.claim_by_lang
    angry = {"negative": 0.9, "neutral": 0.08, "positive": 0.02}
    happy = {"negative": 0.02, "neutral": 0.08, "positive": 0.9}
    text = "@acmebank I have been waiting 3 weeks for my refund, still nothing"
    assert engine.evaluate(text, lang="en", sentiment_label="negative", sentiment_probs=angry).is_claim
    assert not engine.evaluate("@acmebank thank you so much, lovely staff today", lang="en",
                               sentiment_label="positive", sentiment_probs=happy).is_claim


def _write_table(root: Path, body: str) -> None:
    (root / "en" / "airline.toml").write_text('lang = "en"\npack = "airline"\n' + body, encoding="utf-8")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\nkeywords = ["a"]\ncolour = "red"\n',
         r"airline\.toml: rule\[0\]\.colour: unknown field"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\nkeywords = "lost"\n',
         r"rule\[x\.a\]\.keywords: expected a list"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\nweight = "high"\nkeywords = ["a"]\n',
         r"rule\[x\.a\]\.weight: expected a number"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\nregex = ["(unclosed"]\n',
         r"rule\[x\.a\]\.regex\[0\]: invalid regex"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\nregex = ["(a+)+b"]\n',
         r"rule\[x\.a\]\.regex\[0\]: unbounded quantifier"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\nregex = ["(a{1,5}){1,5}b"]\n',
         r"regex\[0\]: nested quantifier"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "topic"\nkeywords = ["a"]\n',
         r"rule\[x\.a\]\.topic: missing required field"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "topic"\ntopic = "general"\nkeywords = ["a"]\n',
         r"rule\[x\.a\]\.topic: 'general' is reserved"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "magic"\nkeywords = ["a"]\n', r"\.kind: unknown kind"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\n', r"rule\[x\.a\]: rule has no patterns"),
        ('[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\nkeywords = ["two words"]\n', r"keywords\[0\]"),
        ('incidents = ["delay"]\nfallback_incident = "crew"\n[[rule]]\nid = "x.a"\nlabel = "A"\nkind = "claim"\n'
         'keywords = ["a"]\n', r"fallback_incident: 'crew' is not in incidents"),
    ],
)
def test_validation_errors(tmp_path: Path, body: str, match: str) -> None:
    root = _copy_tables(tmp_path)
    _write_table(root, body)
    with pytest.raises(RuleConfigError, match=match) as info:
        RuleEngine.load(root)
    assert "\n" not in str(info.value)


def test_meta_and_brands_validation(tmp_path: Path) -> None:
    root = _copy_tables(tmp_path)
    (root / "meta.toml").write_text('version = "1"\n[urgency]\nloudness = 2\n', encoding="utf-8")
    with pytest.raises(RuleConfigError, match=r"meta\.toml: urgency\.loudness: unknown field"):
        RuleEngine.load(root)
    root = _copy_tables(tmp_path / "b")
    (root / "brands.toml").write_text('[brands]\nacme = ["rocketry"]\n', encoding="utf-8")
    with pytest.raises(RuleConfigError, match=r"brands\.toml: brands\.acme: unknown pack 'rocketry'"):
        RuleEngine.load(root)


def test_duplicate_rule_id(tmp_path: Path) -> None:
    root = _copy_tables(tmp_path)
    _write_table(root, '[[rule]]\nid = "en.claim.money"\nlabel = "A"\nkind = "claim"\nkeywords = ["a"]\n')
    with pytest.raises(RuleConfigError, match="also defined in"):
        RuleEngine.load(root)


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*b", r"(a|aa){1,20}c", r"\w+x", r"(x)\1",
                                     r"\w{0,30}\w{0,30}\w{0,30}"])
def test_check_regex_rejects_dangerous(pattern: str) -> None:
    with pytest.raises(ValueError):
        check_regex(pattern)


@pytest.mark.parametrize("pattern", [r"\bdelay(?:ed|s){0,1}\b", r"£ ?\d", r"\d{1,4} ?(?:€|eur)", r"[?!]{2,5}"])
def test_check_regex_accepts_safe(pattern: str) -> None:
    check_regex(pattern)


# ----------------------------------------------------------------------------- normalization
def test_normalize() -> None:
    assert normalize("Sooooo BAD") == "soo bad"
    assert normalize("Rééémbourser") == "reembourser"
    assert normalize("Ça ne marche pas, RÉSILIATION") == "ca ne marche pas, resiliation"
    assert normalize("It doesn't work, I can't login") == "it does not work, i can not login"
    assert "http" not in normalize("look https://t.co/abcdef here")
    assert tokenize(normalize("#LostLuggage @United j'ai")) == ["#lostluggage", "@united", "j", "ai"]


def test_detect_lang() -> None:
    assert detect_lang(tokenize(normalize("je n'ai plus de connexion depuis hier, merci de répondre"))) == "fr"
    assert detect_lang(tokenize(normalize("my flight is delayed and the app is not working"))) == "en"


def test_elongation_and_accents_match(engine: RuleEngine) -> None:
    res = engine.evaluate("@free je veux être rééémbourséééé !!!", lang="fr", brand="free")
    assert "fr.claim.money" in res.matched
    res = engine.evaluate("@united my bagggg is LOOOOST", brand="united")
    assert res.incident == "baggage"


# ------------------------------------------------------------------------------------- examples
def test_english_airline_examples(engine: RuleEngine) -> None:
    res = engine.evaluate("@united my flight to Denver got cancelled and nobody can rebook me", brand="united",
                          sentiment_label="negative",
                          sentiment_probs={"negative": 0.9, "neutral": 0.08, "positive": 0.02})
    assert res.incident == "cancellation" and res.is_claim and res.lang == "en"
    res = engine.evaluate("@delta 3 hours sitting on the tarmac, flight delayed again", brand="delta")
    assert res.incident == "delay"
    res = engine.evaluate("@AmericanAir on hold for 2 hours, customer service never answers", brand="americanair")
    assert res.incident == "customer_service"
    res = engine.evaluate("@SouthwestAir the flight attendant was so rude to my mother", brand="southwestair")
    assert res.incident == "crew"


def test_english_airline_more_incidents(engine: RuleEngine) -> None:
    cases = [
        ("@united the wifi never worked and my seat would not recline on a 5 hour flight", "inflight"),
        ("@delta 45 minutes standing in line at the check in counter, only one kiosk open", "queues"),
        ("@JetBlue I cannot use my points online, the website shows an error when I try to book", "booking"),
        ("@AmericanAir your gate agent was rude and unprofessional to everyone", "crew"),
        ("@SouthwestAir where is my luggage? 2 days and my suitcase is still missing", "baggage"),
        ("@united I was hung up on twice, no one answers the phone", "customer_service"),
        ("@USAirways worst airline ever", "customer_service"),  # no specific cue -> fallback
    ]
    for text, incident in cases:
        res = engine.evaluate(text, pack="airline", lang="en", sentiment_label="negative")
        assert res.incident == incident, (text, res.topics)


def test_english_claim_cues(engine: RuleEngine) -> None:
    claims = [
        "@AcmeSupport my order still has not arrived and nobody replies, any update?",
        "@shopco your website charged me twice for one item",
        "@acmecare still waiting for my refund after 3 weeks",
    ]
    for text in claims:
        assert engine.evaluate(text, lang="en").is_claim, text
    not_claims = [
        "can not wait for the game tonight with my friends lol",
        "@bestie she looks so happy in that video, love it",
        "enter the giveaway for a chance to win a new phone!",
    ]
    for text in not_claims:
        assert not engine.evaluate(text, lang="en").is_claim, text


def test_english_telecom_examples(engine: RuleEngine) -> None:
    res = engine.evaluate("@EE no signal at all in my area since this morning, is there an outage?", brand="ee")
    assert res.incident == "network"
    res = engine.evaluate("@O2 you charged me twice on my bill this month, I want a refund", brand="o2")
    assert res.incident == "billing" and res.is_claim


def test_french_examples(engine: RuleEngine) -> None:
    res = engine.evaluate("@free toujours pas d'internet depuis 3 jours, c'est inadmissible", brand="free")
    assert res.lang == "fr" and res.incident == "network" and res.is_claim
    res = engine.evaluate("@Freebox je veux résilier mon abonnement, la résiliation ne passe pas", brand="freebox")
    assert res.incident == "subscription"
    res = engine.evaluate("@free vous m'avez prélevé deux fois sur ma facture, remboursez-moi", brand="free")
    assert res.incident == "billing"


def test_positive_tweet_is_not_claim(engine: RuleEngine) -> None:
    res = engine.evaluate("Thanks @delta, lovely crew and a great flight!", brand="delta", sentiment_label="positive")
    assert not res.is_claim
    assert res.urgency == "low"
    assert res.incident is None


def test_pack_overrides_brand(engine: RuleEngine) -> None:
    text = "my bag was lost and there is no signal here"
    assert engine.evaluate(text, brand="ee", pack="airline").incident == "baggage"
    assert engine.evaluate(text, brand="united", pack="telecom").incident == "network"


def test_negation(engine: RuleEngine) -> None:
    praised = engine.evaluate("great service", lang="en")
    negated = engine.evaluate("not great service", lang="en")
    assert "en.noclaim.praise" in praised.matched
    assert "en.noclaim.praise" not in negated.matched


def test_urgency_levels(engine: RuleEngine) -> None:
    calm = engine.evaluate("@united what time does boarding start?", brand="united")
    assert calm.urgency == "low"
    angry = engine.evaluate("@united YOU LOST MY BAG AND NOBODY ANSWERS!!! I am calling my lawyer, never again",
                            brand="united", sentiment_label="negative", sentiment_probs={"negative": 0.97})
    assert angry.urgency == "critical"
    mid = engine.evaluate("@united my flight is delayed again", brand="united", sentiment_label="negative")
    assert mid.urgency in ("medium", "critical")
    small = engine.evaluate("@united my bag is lost", brand="united", followers=10)
    big = engine.evaluate("@united my bag is lost", brand="united", followers=2_000_000)
    order = {"low": 0, "medium": 1, "critical": 2}
    assert order[big.urgency] > order[small.urgency]


def test_confidence_formula(engine: RuleEngine) -> None:
    weak = engine.evaluate("hello", lang="en", sentiment_label="neutral", sentiment_probs={"neutral": 0.4})
    strong = engine.evaluate("@united lost my bag, I want a refund, worst airline", brand="united",
                             sentiment_label="negative", sentiment_probs={"negative": 0.95, "neutral": 0.04})
    assert 0.0 <= weak.confidence <= 1.0 and 0.0 <= strong.confidence <= 1.0
    assert strong.confidence > weak.confidence


# ---------------------------------------------------------------------------- robustness
@pytest.mark.parametrize(
    "text",
    ["a" * 100_000, "!" * 100_000, "aaaa " * 20_000, "#" * 50_000 + "x", "é" * 50_000, "@" * 100_000,
     "lost " * 20_000, "\\u0041" * 20_000, "ab" * 50_000, "1" * 100_000 + "€"],
)
def test_adversarial_inputs_are_fast(engine: RuleEngine, text: str) -> None:
    t0 = time.perf_counter()
    res = engine.evaluate(text, brand="free")
    engine.evaluate(text, lang="fr", pack="telecom")
    assert time.perf_counter() - t0 < 1.0
    assert isinstance(res, RuleResult)


def test_cost_is_linear(engine: RuleEngine) -> None:
    def cost(n: int) -> float:
        text = "x" * n + " lost bag"
        t0 = time.perf_counter()
        for _ in range(3):
            engine.evaluate(text, pack="airline")
        return time.perf_counter() - t0

    cost(1000)
    assert cost(3200) < 12 * cost(800) + 0.01


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(max_size=400),
    lang=st.sampled_from([None, "en", "fr", "de", ""]),
    brand=st.sampled_from([None, "united", "free", "unknown", "@EE"]),
    label=st.sampled_from(["negative", "neutral", "positive"]),
    probs=st.one_of(st.none(), st.dictionaries(st.sampled_from(["negative", "neutral", "positive"]),
                                               st.floats(allow_nan=True, allow_infinity=True))),
    followers=st.one_of(st.none(), st.integers(min_value=0, max_value=10**9)),
)
def test_evaluate_never_raises(engine: RuleEngine, text: str, lang: str | None, brand: str | None, label: str,
                               probs: dict[str, float] | None, followers: int | None) -> None:
    res = engine.evaluate(text, lang=lang, brand=brand, sentiment_label=label, sentiment_probs=probs,
                          followers=followers)
    assert isinstance(res.is_claim, bool)
    assert res.urgency in ("low", "medium", "critical")
    assert 0.0 <= res.confidence <= 1.0
    assert res.lang in ("en", "fr")
    assert all(isinstance(t, str) for t in res.topics)
    assert res.incident is None or isinstance(res.incident, str)
    assert all(isinstance(m, str) for m in res.matched)

"""Scenario simulator: generated brand chatter, then bad-buzz storms (no dataset rows).

Tweets are assembled from small phrase tables so the traffic looks like a real brand's
mentions: mostly neutral/positive chatter, then a brand's incident going viral with
retweets and copy-pasted complaints (an English airline's lost bags, a French ISP's network
outage). Used by ``badbuzz demo``, the tests and the benchmarks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

BRANDS: dict[str, tuple[str, str]] = {  # handle -> (domain, language)
    "airparadis": ("airline", "en"),
    "telcoplus": ("telecom", "en"),
    "freebox": ("telecom", "fr"),
}

CHATTER = {
    "en": {
        "positive": [
            "Thanks @{b}, smooth {thing} today and the team was lovely {emo}",
            "Shoutout to @{b} for sorting my {thing} so quickly, great job",
            "Really impressed by @{b} this week, {thing} was perfect",
            "@{b} you made my day, best {thing} in years {emo}",
        ],
        "neutral": [
            "@{b} what time does the {thing} update go out tomorrow?",
            "Reading about the new @{b} offers for {thing}",
            "@{b} is there a way to change my {thing} online?",
            "On my way, {thing} with @{b} this afternoon",
        ],
        "negative": [
            "@{b} a bit disappointed with the {thing} today",
            "meh, @{b} {thing} was slow again",
        ],
    },
    "fr": {
        "positive": [
            "Merci @{b}, {thing} au top aujourd'hui {emo}",
            "Bravo @{b} pour la rapidité, {thing} réglé en 5 minutes",
        ],
        "neutral": [
            "@{b} c'est quand la mise à jour de la {thing} ?",
            "Quelqu'un a testé la nouvelle offre {thing} de @{b} ?",
            "@{b} comment je change mon {thing} en ligne ?",
        ],
        "negative": ["@{b} un peu déçu par la {thing} ce soir", "bof la {thing} @{b} encore lente"],
    },
}
THINGS = {
    "airline": ["flight", "check-in", "boarding", "booking", "lounge"],
    "telecom": ["box", "fibre", "connexion", "forfait", "app"],
}
STORMS = {
    ("airline", "en"): ("baggage", [
        "@{b} you LOST my bag on flight {fl} and nobody answers the phone. I want a refund now!!",
        "@{b} 3 days and still no luggage, no compensation, no reply. Disgusting service {angry}",
        "Stranded in the airport without my suitcase, @{b} lost 200 bags on {fl}?! Never again",
        "@{b} where is my baggage?? Flight {fl}, claim filed, zero update. Worst airline ever",
    ]),
    ("telecom", "en"): ("network", [
        "@{b} no internet since this morning, outage everywhere and support hangs up on me!!",
        "@{b} network down for 2 days, I work from home, I want a refund {angry}",
        "Total outage @{b}, no signal, no wifi, nothing. Cancelling my contract",
    ]),
    ("telecom", "fr"): ("network", [
        "@{b} panne internet depuis ce matin, aucune réponse du service client, inadmissible !!",
        "@{b} toujours en panne, 3 jours sans connexion, je veux un remboursement {angry}",
        "Panne générale @{b}, plus de réseau, je vais résilier mon abonnement",
    ]),
}
EMOJI = ["🙂", "👍", "✈️", "🙏", "😊"]
ANGRY = ["😡", "🤬", "😤", ""]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Scenario:
    """Deterministic traffic for ``brands``; ``storm_brand`` gets the bad buzz."""

    seed: int = 7
    brands: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(BRANDS))
    storm_brand: str = "airparadis"
    duplicate_share: float = 0.4
    _n: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.recent: list[dict[str, Any]] = []

    def _author(self, big: bool = False) -> dict[str, Any]:
        uid = self.rng.randrange(100_000)
        followers = self.rng.randrange(20_000, 400_000) if big else int(self.rng.paretovariate(1.2) * 80)
        return {"id": f"u{uid}", "handle": f"user{uid}", "followers": followers}

    def _tweet(self, brand: str, text: str, ts: float, **extra: Any) -> dict[str, Any]:
        self._n += 1
        lang = self.brands[brand][1]
        tweet = {"id": f"sim-{self.seed}-{self._n}", "text": text, "created_at": iso(ts), "lang": lang,
                 "brand": brand, "author": self._author(extra.pop("big", False)), "is_retweet": False} | extra
        self.recent.append(tweet)
        del self.recent[:-200]
        return tweet

    def chatter(self, ts: float, brand: str | None = None) -> dict[str, Any]:
        brand = brand or self.rng.choice(list(self.brands))
        domain, lang = self.brands[brand]
        mood = self.rng.choices(["positive", "neutral", "negative"], weights=[35, 50, 15])[0]
        text = self.rng.choice(CHATTER[lang][mood]).format(b=brand, thing=self.rng.choice(THINGS[domain]),
                                                          emo=self.rng.choice(EMOJI))
        return self._tweet(brand, text, ts)

    def storm_tweet(self, ts: float, brand: str | None = None) -> dict[str, Any]:
        brand = brand or self.storm_brand
        domain, lang = self.brands[brand]
        storm = [t for t in self.recent if t["brand"] == brand and t.get("storm")]
        if storm and self.rng.random() < self.duplicate_share:  # retweet or copy-paste of an earlier complaint
            src = self.rng.choice(storm)
            if self.rng.random() < 0.5:
                return self._tweet(brand, f"RT @{src['author']['handle']}: {src['text']}", ts,
                                   is_retweet=True, retweet_of=src["id"], storm=True)
            return self._tweet(brand, src["text"], ts, storm=True)
        _, templates = STORMS[(domain, lang)]
        text = self.rng.choice(templates).format(b=brand, fl=f"PX{self.rng.randrange(100, 999)}",
                                                 angry=self.rng.choice(ANGRY))
        return self._tweet(brand, text, ts, storm=True, big=self.rng.random() < 0.05)

    def history(self, now: float, minutes: int = 15, per_minute: int = 30) -> Iterator[dict[str, Any]]:
        """Calm past traffic with event times in the last ``minutes``: baselines for the alert rules."""
        for m in range(minutes, 0, -1):
            for _ in range(per_minute):
                yield self._clean(self.chatter(now - m * 60 + self.rng.random() * 60))

    def live(self, start: float, duration: float, rate: float, storm_at: float = 0.3,
             storm_factor: float = 6.0, storms: dict[str, tuple[float, float]] | None = None,
             ) -> Iterator[tuple[float, dict[str, Any]]]:
        """``(send_offset_s, tweet)``: chatter at ``rate``/s; each storm (brand -> (start as a share of the
        run, storm tweets per chatter tweet)) from its start; default: ``storm_brand`` from ``storm_at``."""
        storms = storms or {self.storm_brand: (storm_at, storm_factor)}
        t = 0.0
        while t < duration:
            yield t, self._clean(self.chatter(start + t))
            for brand, (at, factor) in storms.items():
                if t >= at * duration:
                    for _ in range(int(factor) + (self.rng.random() < factor % 1)):
                        yield t, self._clean(self.storm_tweet(start + t, brand))
            t += 1.0 / rate

    @staticmethod
    def _clean(tweet: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in tweet.items() if k != "storm"}

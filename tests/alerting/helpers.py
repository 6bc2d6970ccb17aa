from __future__ import annotations

T0 = 1_714_557_600  # 2024-05-01T10:00:00Z, a multiple of 60
B0 = T0 // 60


def tweet(i: int, *, negative: bool = True, incident: str = "none", followers: int = 100,
          claim: bool = False, urgency: str = "low", ts: float = T0) -> dict:
    return {
        "id": str(i), "text": f"tweet {i} is {'awful' if negative else 'fine'}", "created_at": ts,
        "brand": "acme", "author": {"id": f"u{i}", "handle": f"user{i}", "followers": followers},
        "sentiment": {"label": "negative" if negative else "positive",
                      "probs": {"negative": 0.9 if negative else 0.05}},
        "is_claim": claim, "urgency": urgency, "incident": incident,
    }

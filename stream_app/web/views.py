"""HTTP endpoints on the worker's Faust web server.

``/health`` liveness, ``/ready`` readiness, ``/metrics`` Prometheus; ``/feedback`` (POST) publishes a
comms-team correction; ``/dashboard`` and ``/api/state`` serve the live dashboard. Off loopback, the
feedback, dashboard and API endpoints require ``Authorization: Bearer $BADBUZZ_API_TOKEN``.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from faust.web import View
from prometheus_client import generate_latest

from .. import metrics
from .state import brand_state

STATIC = Path(__file__).parent / "static"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_BODY = 16 * 1024
LABELS = ("negative", "neutral", "positive")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class FeedbackError(ValueError):
    pass


def validate_feedback(body: Any, recent: dict[str, tuple[str | None, str, str]]) -> dict[str, Any]:
    """A feedback event from a request body; missing prediction fields come from recent predictions."""
    if not isinstance(body, dict):
        raise FeedbackError("body must be a JSON object")
    unknown = set(body) - {"tweet_id", "correct_label", "reporter", "predicted_label", "brand", "text"}
    if unknown:
        raise FeedbackError(f"unknown field(s): {', '.join(sorted(unknown))}")
    tweet_id, label, reporter = body.get("tweet_id"), body.get("correct_label"), body.get("reporter", "dashboard")
    if not isinstance(tweet_id, str) or not 0 < len(tweet_id) <= 128:
        raise FeedbackError("tweet_id must be a string of 1-128 characters")
    if label not in LABELS:
        raise FeedbackError(f"correct_label must be one of {', '.join(LABELS)}")
    if not isinstance(reporter, str) or not 0 < len(reporter) <= 128:
        raise FeedbackError("reporter must be a string of 1-128 characters")
    known = recent.get(tweet_id)
    brand = body.get("brand", known[0] if known else None)
    predicted = body.get("predicted_label", known[1] if known else None)
    text = body.get("text", known[2] if known else None)
    if predicted is None:
        raise FeedbackError("unknown tweet_id: include predicted_label and brand")
    if predicted not in LABELS:
        raise FeedbackError(f"predicted_label must be one of {', '.join(LABELS)}")
    if brand is not None and (not isinstance(brand, str) or len(brand) > 64):
        raise FeedbackError("brand must be a string of at most 64 characters")
    if text is not None and (not isinstance(text, str) or len(text) > 4000):
        raise FeedbackError("text must be a string of at most 4000 characters")
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"tweet_id": tweet_id, "correct_label": label, "reporter": reporter, "at": at,
            "predicted_label": predicted, "brand": brand, "text": text}


def wire_web(pipe: Any) -> None:
    app, s = pipe.app, pipe.settings
    protected = not is_loopback(s.web_host)

    def authorized(request: Any) -> bool:
        if not protected:
            return True
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() or request.query.get("token", "")
        return bool(s.api_token) and hmac.compare_digest(token.encode(), s.api_token.encode())

    def deny(web: Any) -> Any:
        return web.json({"error": "missing or invalid bearer token"}, status=401)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "uptime_s": round(time.time() - pipe.started_at, 1)})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        checks = pipe.ready()
        return web.json({"ready": all(checks.values()), "checks": checks}, status=200 if all(checks.values()) else 503)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        pipe.update_lag()
        return web.bytes(generate_latest(metrics.REGISTRY), content_type="text/plain; version=0.0.4")

    @app.page("/feedback")
    class Feedback(View):
        async def post(self, request: Any) -> Any:
            if not authorized(request):
                return deny(self)
            body = await request.read()
            if len(body) > MAX_BODY:
                return self.json({"error": f"body larger than {MAX_BODY} bytes"}, status=413)
            try:
                event = validate_feedback(orjson.loads(body), pipe.recent)
            except orjson.JSONDecodeError:
                return self.json({"error": "body is not valid JSON"}, status=400)
            except FeedbackError as exc:
                return self.json({"error": str(exc)}, status=400)
            await pipe.topics["feedback"].send(key=(event["brand"] or "-").encode(), value=orjson.dumps(event))
            return self.json({"status": "accepted", "feedback": event}, status=202)

    @app.page("/api/state")
    async def api_state(web: Any, request: Any) -> Any:
        if not authorized(request):
            return deny(web)
        return web.bytes(orjson.dumps(dashboard_state(pipe)), content_type="application/json")

    async def page(web: Any, request: Any) -> Any:
        if not authorized(request):
            return deny(web)
        return web.html((STATIC / "dashboard.html").read_text(encoding="utf-8"))

    app.page("/")(page)
    app.page("/dashboard")(page)


def dashboard_state(pipe: Any) -> dict[str, Any]:
    states = pipe.tables.get("states")
    engine = getattr(pipe, "alert_engine", None)
    brands = []
    if states is not None and engine is not None:
        for brand, st in sorted(list(states.items())):
            if st:
                brands.append(brand_state(engine, brand, st))
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model": pipe.enricher.model_info,
        "rules_version": pipe.enricher.rules.version,
        "brands": brands,
        "alerts": list(reversed(pipe.latest_alerts)),
        "negative": sorted(pipe.negatives, key=lambda t: -t["p_negative"])[:20],
    }

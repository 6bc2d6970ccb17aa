"""HTTP endpoints on the worker's Faust web server.

``/health`` liveness, ``/ready`` readiness, ``/metrics`` Prometheus; ``/feedback`` (POST) publishes a
comms-team correction; ``/dashboard`` and ``/api/state`` serve the live dashboard. When the server is not
bound to loopback only (or a request arrives on a non-loopback address), ``/feedback`` and ``/api/state``
require ``Authorization: Bearer $BADBUZZ_API_TOKEN``. Every endpoint but the probes checks ``Host`` (and
``Origin`` when sent) against an allow-list, so DNS rebinding and cross-site posts are refused (SECURITY.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
import socket
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from faust.web import View
from prometheus_client import generate_latest

from .. import metrics
from ..alerting.reports import LABELS
from ..scoring.text import retweeted_text
from .predict import MAX_PREDICT_BODY, Coalescer, PredictError, model_info, parse_predict_request, prediction
from .ratelimit import RateLimit
from .state import brand_state

log = logging.getLogger("badbuzz.web")
STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024
WILDCARDS = {"", "0.0.0.0", "::", "*"}
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
DENIED = {"error": "missing or invalid bearer token"}


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on loopback only: every address it resolves to is loopback.

    Decided from the addresses the server binds, not the name: ``0.0.0.0``/``::``/empty bind every
    interface, and a name resolving to any non-loopback address is not loopback.
    """
    if host.strip() in WILDCARDS:
        return False
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def _authority(netloc: str) -> str:
    """``host[:port]`` lower-cased, without a default port (a TLS proxy may or may not forward ``:443``)."""
    netloc = netloc.strip().lower().rsplit("@", 1)[-1]
    for default in (":80", ":443"):
        netloc = netloc.removesuffix(default)
    return netloc


def allowed_hosts(settings: Any) -> frozenset[str] | None:
    """Authorities accepted in ``Host``/``Origin``; None (no Host check) on a wildcard bind.

    Default: the configured host and the localhost forms at the web port, plus the public dashboard URL's
    host. A wildcard bind requires the token, which is what protects it (any Host reaches it there).
    """
    host = settings.web_host.strip()
    if host in WILDCARDS:
        return None
    host = f"[{host.strip('[]')}]" if ":" in host else host
    hosts = {_authority(f"{h}:{settings.web_port}") for h in (host, *LOCAL_NAMES)}
    if settings.dashboard_url and (netloc := urlsplit(settings.dashboard_url).netloc):
        hosts.add(_authority(netloc))
    return frozenset(hosts)


def host_allowed(request: Any, allowed: frozenset[str] | None) -> bool:
    """``Host`` is allow-listed, and ``Origin`` (when sent) is allow-listed or this same host."""
    host = _authority(request.headers.get("Host", ""))
    if allowed is not None and host not in allowed:
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (sandboxed frames, file://) and other schemes
    return _authority(parts.netloc) == host or (allowed is not None and _authority(parts.netloc) in allowed)


def bearer(request: Any) -> bytes:
    """The token of an ``Authorization: Bearer`` header as bytes (never from the URL: it would be logged)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return b""
    return token.strip().encode("utf-8", "replace")  # non-ASCII tokens compare (and fail), never raise


def arrived_on_loopback(request: Any) -> bool:
    """Whether the connection's local address is loopback (a second check that needs no name at all)."""
    transport = getattr(request, "transport", None)
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname or not isinstance(sockname, tuple):
        return True  # unix socket: local by construction
    try:
        return ipaddress.ip_address(str(sockname[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


@cache
def dashboard_page() -> tuple[str, dict[str, str]]:
    """The dashboard HTML and its headers: a CSP allowing exactly its own inline scripts (by hash)."""
    text = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
                      for m in re.findall(r"<script>(.*?)</script>", text, re.S))
    csp = (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self'; "
           "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    return text, {**HTML_HEADERS, "Content-Security-Policy": csp}


HTML_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store"}


# A person correcting labels by hand never hits the client limit (20 at once, 60 a minute at most); the
# misclassification alert needs a handful of reports per window, so a brand takes 10 a minute.
FEEDBACK_PER_CLIENT = "20/20 seconds"
FEEDBACK_PER_BRAND = "10/minute"


class FeedbackError(ValueError):
    pass


def validate_feedback(body: Any, recent: dict[str, tuple[str | None, str, str]]) -> dict[str, Any]:
    """A feedback event from a request body. The worker judges it against the prediction table
    (alerting/reports.py), so a tweet scored by another worker is accepted too; this worker's recent
    predictions only fill in the brand (the event's key and the per-brand rate limit) and the text."""
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
    if predicted is not None and predicted not in LABELS:
        raise FeedbackError(f"predicted_label must be one of {', '.join(LABELS)}")
    if brand is not None and (not isinstance(brand, str) or len(brand) > 64):
        raise FeedbackError("brand must be a string of at most 64 characters")
    if text is not None and (not isinstance(text, str) or len(text) > 4000):
        raise FeedbackError("text must be a string of at most 4000 characters")
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"tweet_id": tweet_id, "correct_label": label, "reporter": reporter, "at": at,
            "predicted_label": predicted, "brand": brand, "text": text}


async def read_bounded(request: Any, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes (declared or streamed).

    aiohttp's own ``read()`` stops at 1 MiB (its ``client_max_size``) with an exception; this reads in
    chunks so each endpoint sets its own bound and never holds more than that in memory.
    """
    if (request.content_length or 0) > limit:
        return None
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def wire_web(pipe: Any) -> None:
    app, s = pipe.app, pipe.settings
    bound_loopback = is_loopback(s.web_host)
    allowed = allowed_hosts(s)
    expected = (s.api_token or "").encode()
    per_client = RateLimit(FEEDBACK_PER_CLIENT, "feedback-client")
    per_brand = RateLimit(FEEDBACK_PER_BRAND, "feedback-brand")
    predict_limit = RateLimit(s.predict_rate_limit, "predict-client")

    def too_many(web: Any, wait: int, what: str, endpoint: str = "feedback") -> Any:
        return web.json({"error": f"too many {endpoint} requests for this {what}; retry later",
                         "retry_after_s": wait}, status=429, headers={"Retry-After": str(wait)})

    def not_json(request: Any) -> bool:
        # A cross-site form or no-cors fetch can only send "simple" content types; requiring JSON
        # forces a CORS preflight, which this server never grants.
        return request.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json"

    def refused(web: Any, request: Any, *, auth: bool = True) -> Any | None:
        """The error response for a request that fails the Host/Origin or token check, else None."""
        if not host_allowed(request, allowed):
            return web.json({"error": "host or origin not allowed"}, status=403, headers=dict(HTML_HEADERS))
        if auth and not (bound_loopback and arrived_on_loopback(request)):
            if not expected or not hmac.compare_digest(bearer(request), expected):
                return web.json(DENIED, status=401, headers={**HTML_HEADERS, "WWW-Authenticate": "Bearer"})
        return None

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
            if (denied := refused(self, request)) is not None:
                return denied
            if wait := per_client.retry_after(request.remote or "-"):
                return too_many(self, wait, "client")
            if not_json(request):
                return self.json({"error": "Content-Type must be application/json"}, status=415)
            body = await request.read()
            if len(body) > MAX_BODY:
                return self.json({"error": f"body larger than {MAX_BODY} bytes"}, status=413)
            try:
                event = validate_feedback(orjson.loads(body), pipe.recent)
            except orjson.JSONDecodeError:
                return self.json({"error": "body is not valid JSON"}, status=400)
            except FeedbackError as exc:
                return self.json({"error": str(exc)}, status=400)
            if wait := per_brand.retry_after((event["brand"] or "-").strip().lower()):
                return too_many(self, wait, "brand")
            await pipe.topics["feedback"].send(key=(event["brand"] or "-").encode(), value=orjson.dumps(event))
            return self.json({"status": "accepted", "feedback": event}, status=202)

    @app.page("/predict")
    class Predict(View):
        async def post(self, request: Any) -> Any:
            started = time.perf_counter()
            outcome, response = await self.answer(request)
            metrics.PREDICT_REQUESTS.labels(outcome).inc()
            if outcome == "ok":
                elapsed = time.perf_counter() - started
                metrics.PREDICT_SECONDS.observe(elapsed)
                if pipe.health is not None:  # the predict_latency health rule
                    pipe.health.observe_latency(time.time(), "predict", elapsed)
            return response

        async def answer(self, request: Any) -> tuple[str, Any]:
            if (denied := refused(self, request)) is not None:
                return "denied", denied
            if wait := predict_limit.retry_after(request.remote or "-"):
                return "rate_limited", too_many(self, wait, "client", "predict")
            if not_json(request):
                return "unsupported_type", self.json({"error": "Content-Type must be application/json"}, status=415)
            if (body := await read_bounded(request, MAX_PREDICT_BODY)) is None:
                return "too_large", self.json({"error": f"body larger than {MAX_PREDICT_BODY} bytes"}, status=413)
            try:
                tweets = parse_predict_request(orjson.loads(body), max_text=s.max_text)
            except orjson.JSONDecodeError:
                return "invalid", self.json({"error": "body is not valid JSON"}, status=400)
            except PredictError as exc:
                return "invalid", self.json(exc.body(), status=400)
            try:
                # The agent's own executor and enricher: same cache, and the event loop never waits on ONNX.
                events = await coalescer.enrich(tweets)
            except Exception as exc:  # noqa: BLE001 - reported as a JSON 500, logged with its traceback
                log.exception("POST /predict: scoring failed")
                return "error", self.json({"error": f"scoring failed: {type(exc).__name__}"}, status=500)
            metrics.PREDICT_TWEETS.inc(len(events))
            return "ok", self.bytes(orjson.dumps({"predictions": [prediction(e) for e in events],
                                                  "model": pipe.enricher.model_info,
                                                  "rules_version": pipe.enricher.rules.version}),
                                    content_type="application/json")

    info = model_info(pipe.enricher)
    coalescer = Coalescer(pipe.enricher.enrich, pipe.executor)

    @app.page("/model/info")
    async def model_info_page(web: Any, request: Any) -> Any:
        if (denied := refused(web, request)) is not None:
            return denied
        return web.json(info)

    @app.page("/api/state")
    async def api_state(web: Any, request: Any) -> Any:
        if (denied := refused(web, request)) is not None:
            return denied
        return web.bytes(orjson.dumps(dashboard_state(pipe)), content_type="application/json",
                         headers=dict(HTML_HEADERS))

    async def page(web: Any, request: Any) -> Any:
        # The page is static and holds no data (it fetches /api/state with the bearer header), so it
        # needs no token: a browser cannot send a header when navigating, and a URL token gets logged.
        if (denied := refused(web, request, auth=False)) is not None:
            return denied
        text, headers = dashboard_page()
        return web.html(text, headers=dict(headers))

    app.page("/")(page)
    app.page("/dashboard")(page)


def distinct_texts(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The first ``k`` rows with different texts: a storm's retweets and copy-pastes are one complaint, shown
    once (with how many times it came), not twenty times."""
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = retweeted_text(row["text"]).strip().lower()
        if key in seen:
            seen[key]["copies"] = seen[key].get("copies", 1) + 1
        elif len(seen) < k:
            seen[key] = dict(row)
    return list(seen.values())


def dashboard_state(pipe: Any) -> dict[str, Any]:
    states = pipe.tables.get("states")
    engine = getattr(pipe, "alert_engine", None)
    brands = []
    if states is not None and engine is not None:
        cap = getattr(pipe, "brand_cap", None)
        for brand, st in sorted(list(states.items())):
            if st and (cap is None or cap.keeps(brand)):  # beyond the cap, brands get no card of their own
                brands.append(brand_state(engine, brand, st))
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model": pipe.enricher.model_info,
        "rules_version": pipe.enricher.rules.version,
        "brands": brands,
        "alerts": list(reversed(pipe.latest_alerts)),
        "negative": distinct_texts(sorted(pipe.negatives, key=lambda t: -t["p_negative"]), 20),
    }

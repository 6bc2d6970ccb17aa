"""Settings from environment variables, with documented defaults.

Every variable the application reads is listed in ``ENV_DOCS`` (rendered in the README and
checked against the deployment files by the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DEFAULT_MODEL_DIR = REPO_DIR / "models" / "badbuzz-sentiment-minilm"

ENV_DOCS: dict[str, tuple[str, str]] = {
    "BADBUZZ_BROKER": ("", "Kafka URL, e.g. kafka://127.0.0.1:9092; unset = start the embedded broker"),
    "BADBUZZ_APP_ID": ("badbuzz", "Faust application id (consumer group, changelog topic prefix)"),
    "BADBUZZ_TOPIC_TWEETS": ("tweets", "input topic"),
    "BADBUZZ_TOPIC_ENRICHED": ("tweets.enriched", "output topic for enriched tweets"),
    "BADBUZZ_TOPIC_FEEDBACK": ("tweets.feedback", "misclassification feedback topic"),
    "BADBUZZ_TOPIC_ALERTS": ("alerts", "alerts topic (source of truth for notifications)"),
    "BADBUZZ_TOPIC_DLQ": ("tweets.dlq", "dead-letter topic"),
    "BADBUZZ_PARTITIONS": ("4", "partitions of every topic (max parallelism)"),
    "BADBUZZ_MODEL_DIR": (str(DEFAULT_MODEL_DIR), "sentiment model folder (model.onnx, tokenizer.json, config.json)"),
    "BADBUZZ_RULES_DIR": ("", "rule tables folder; unset = the shipped tables"),
    "BADBUZZ_ALERT_RULES": ("", "alert rules TOML; unset = the shipped file"),
    "BADBUZZ_WEB_HOST": ("127.0.0.1", "worker web server bind address, bound exactly (metrics, health, dashboard, "
                                      "feedback, predict); Host/Origin must name it, localhost or "
                                      "BADBUZZ_DASHBOARD_URL"),
    "BADBUZZ_WEB_PORT": ("6066", "worker web server port"),
    "BADBUZZ_API_TOKEN": ("", "bearer token (Authorization header only) required by /feedback, /api/state, "
                              "/predict and /model/info when the bind address is not loopback"),
    "BADBUZZ_PREDICT_RATE_LIMIT": ("100/minute", "POST /predict requests allowed per client address, in the "
                                                 "`limits` notation (e.g. 100/minute, 10/second; several: "
                                                 "20/10 seconds;100/minute); moving window, per worker"),
    "BADBUZZ_STATE_DIR": (".badbuzz", "Faust data directory (table state)"),
    "BADBUZZ_BATCH_SIZE": ("256", "largest scoring micro-batch (under load batches fill up to it)"),
    "BADBUZZ_BATCH_WAIT": ("0.005", "seconds to wait for a micro-batch to fill (a full batch goes at once)"),
    "BADBUZZ_ORT_THREADS": ("0", "onnxruntime intra-op threads per sub-batch; 0 = cores / BADBUZZ_ORT_PARALLEL"),
    "BADBUZZ_ORT_PARALLEL": ("0", "sub-batches scored at once, one thread each; 0 = cores (or cores / threads)"),
    "BADBUZZ_ORT_SPIN": ("0", "1 = onnxruntime threads spin while idle (faster alone, steals CPU from the event loop)"),
    "BADBUZZ_FETCH_MAX_WAIT_MS": ("50", "longest a consumer fetch waits for data (Faust's own default is 1500)"),
    "BADBUZZ_CACHE_SIZE": ("50000", "LRU cache entries keyed by normalized text"),
    "BADBUZZ_MAX_TEXT": ("4000", "maximum tweet text length in characters"),
    "BADBUZZ_MAX_BRANDS": ("200", "distinct brands kept apart in metrics, dashboard and alerting ticks besides "
                                  "those the rule tables name; the rest are grouped as 'other'"),
    "BADBUZZ_PREDICTION_TABLE_SIZE": ("50000", "predictions kept (tweet id -> label, brand, text) to judge feedback "
                                               "against; about 0.6 KB each, in memory and in a changelog"),
    "BADBUZZ_PREDICTION_TTL_HOURS": ("24", "feedback on a tweet scored longer ago than this is dead-lettered"),
    "BADBUZZ_DASHBOARD_URL": ("", "public dashboard URL put in alerts; unset = the worker's own"),
    "BADBUZZ_LOG_LEVEL": ("info", "the worker's log level (the other commands log warnings and errors only)"),
    "BADBUZZ_LOG_FORMAT": ("text", "text = one readable line per log record; json = one JSON object per line "
                                   "(time, level, logger, message, and tweet_id/topic/partition/offset when "
                                   "the record concerns one), both on stderr"),
}

# Read where they are used (alerting/notifiers.py, alerting/policy.py via the alert rules, datasets.py);
# listed here so that `badbuzz --help` and the README name every variable once. Secrets have no default.
DELIVERY_ENV_DOCS: dict[str, tuple[str, str]] = {
    "BADBUZZ_ALERT_EMAILS": ("", "comma-separated e-mail recipients (routing 'env:BADBUZZ_ALERT_EMAILS')"),
    "BADBUZZ_ALERT_PHONES": ("", "comma-separated E.164 phone numbers for SMS (routing 'env:BADBUZZ_ALERT_PHONES')"),
    "BADBUZZ_DATASCIENCE_EMAILS": ("", "data-science team e-mails (model alerts); unset = the default recipients"),
    "BADBUZZ_DATASCIENCE_PHONES": ("", "data-science team phone numbers for critical model alerts"),
    "BADBUZZ_DEVOPS_EMAILS": ("", "DevOps team e-mails (operational alerts); unset = the default recipients"),
    "BADBUZZ_DEVOPS_PHONES": ("", "DevOps team phone numbers for critical operational alerts"),
    "BADBUZZ_SUMMARY_WEBHOOKS": ("", "Slack-compatible webhook URLs for the daily summary, comma-separated"),
    "BADBUZZ_SMTP_HOST": ("127.0.0.1", "SMTP server"),
    "BADBUZZ_SMTP_PORT": ("1025", "SMTP port"),
    "BADBUZZ_SMTP_USER": ("", "SMTP user (secret)"),
    "BADBUZZ_SMTP_PASSWORD": ("", "SMTP password (secret)"),
    "BADBUZZ_SMTP_FROM": ("badbuzz@localhost", "sender address"),
    "BADBUZZ_SMTP_STARTTLS": ("", "1 = upgrade the SMTP connection with STARTTLS"),
    "TWILIO_ACCOUNT_SID": ("", "Twilio account (secret)"),
    "TWILIO_AUTH_TOKEN": ("", "Twilio auth token (secret)"),
    "TWILIO_FROM": ("", "Twilio sender number"),
    "BADBUZZ_TWILIO_BASE_URL": ("", "Twilio API base URL (tests point it at a local server)"),
    "BADBUZZ_DATA_DIR": ("../shared/data", "labeled datasets for training, evaluation and backtests"),
}


def env(name: str) -> str:
    return os.environ.get(name, "") or ENV_DOCS[name][0]


def log_format() -> str:
    """BADBUZZ_LOG_FORMAT, checked (read on its own: every command sets up logging, not all need Settings)."""
    value = env("BADBUZZ_LOG_FORMAT").strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"BADBUZZ_LOG_FORMAT={value!r} is not text or json")
    return value


@dataclass(frozen=True)
class Topics:
    tweets: str = "tweets"
    enriched: str = "tweets.enriched"
    feedback: str = "tweets.feedback"
    alerts: str = "alerts"
    dlq: str = "tweets.dlq"

    def all(self) -> list[str]:
        return [self.tweets, self.enriched, self.feedback, self.alerts, self.dlq]


@dataclass(frozen=True)
class Settings:
    broker: str | None = None
    app_id: str = "badbuzz"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 4
    model_dir: Path = DEFAULT_MODEL_DIR
    rules_dir: Path | None = None
    alert_rules: Path | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    api_token: str | None = None
    predict_rate_limit: str = "100/minute"
    state_dir: Path = Path(".badbuzz")
    batch_size: int = 256
    batch_wait: float = 0.005
    ort_threads: int = 0
    ort_parallel: int = 0
    cache_size: int = 50_000
    fetch_max_wait_ms: int = 50
    max_text: int = 4000
    max_brands: int = 200
    prediction_table_size: int = 50_000
    prediction_ttl_hours: float = 24.0
    dashboard_url: str = ""
    log_level: str = "info"
    log_format: str = "text"

    @classmethod
    def from_env(cls) -> Settings:
        def opt_path(name: str) -> Path | None:
            value = env(name)
            return Path(value) if value else None

        def integer(name: str) -> int:
            value = env(name)
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not an integer") from None

        def rate_limit(name: str) -> str:
            from .web.ratelimit import parse_rate

            value = env(name)
            try:
                parse_rate(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            return value

        return cls(
            broker=env("BADBUZZ_BROKER") or None,
            app_id=env("BADBUZZ_APP_ID"),
            topics=Topics(
                tweets=env("BADBUZZ_TOPIC_TWEETS"),
                enriched=env("BADBUZZ_TOPIC_ENRICHED"),
                feedback=env("BADBUZZ_TOPIC_FEEDBACK"),
                alerts=env("BADBUZZ_TOPIC_ALERTS"),
                dlq=env("BADBUZZ_TOPIC_DLQ"),
            ),
            partitions=integer("BADBUZZ_PARTITIONS"),
            model_dir=Path(env("BADBUZZ_MODEL_DIR")),
            rules_dir=opt_path("BADBUZZ_RULES_DIR"),
            alert_rules=opt_path("BADBUZZ_ALERT_RULES"),
            web_host=env("BADBUZZ_WEB_HOST"),
            web_port=integer("BADBUZZ_WEB_PORT"),
            api_token=env("BADBUZZ_API_TOKEN") or None,
            predict_rate_limit=rate_limit("BADBUZZ_PREDICT_RATE_LIMIT"),
            state_dir=Path(env("BADBUZZ_STATE_DIR")),
            batch_size=integer("BADBUZZ_BATCH_SIZE"),
            batch_wait=float(env("BADBUZZ_BATCH_WAIT")),
            ort_threads=integer("BADBUZZ_ORT_THREADS"),
            ort_parallel=integer("BADBUZZ_ORT_PARALLEL"),
            cache_size=integer("BADBUZZ_CACHE_SIZE"),
            fetch_max_wait_ms=integer("BADBUZZ_FETCH_MAX_WAIT_MS"),
            max_text=integer("BADBUZZ_MAX_TEXT"),
            max_brands=integer("BADBUZZ_MAX_BRANDS"),
            prediction_table_size=integer("BADBUZZ_PREDICTION_TABLE_SIZE"),
            prediction_ttl_hours=float(env("BADBUZZ_PREDICTION_TTL_HOURS")),
            dashboard_url=env("BADBUZZ_DASHBOARD_URL"),
            log_level=env("BADBUZZ_LOG_LEVEL"),
            log_format=log_format(),
        )

    @property
    def public_url(self) -> str:
        return self.dashboard_url or f"http://{self.web_host}:{self.web_port}/"

"""The whole alerting configuration (rules, policy, routing, delivery) from one TOML file.

``load_config(path=None)`` reads the shipped ``alert_rules.toml`` or an override and validates it with
one-line :class:`AlertConfigError` messages naming the file and the field. ``build_dispatcher(config)``
creates the notifiers for the channels the routing uses (env: SMTP / Twilio settings) and fails early
when, e.g., SMS is routed but Twilio credentials are missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._schema import AlertConfigError, Field, check_table, fail, positive, subtables
from .health import HealthRule, parse_health
from .notifiers import Dispatcher, RetryPolicy, build_notifiers
from .policy import CHANNELS, AlertPolicy, PolicyConfig, expand_recipients, parse_policy
from .rules import RuleSet, parse_rules, read_toml
from .summary import SummaryConfig, parse_summary

__all__ = ["AlertConfig", "AlertConfigError", "build_dispatcher", "load_config", "parse_config"]

TOP_LEVEL = ("settings", "rules", "health", "summary", "policy", "quiet_hours", "routing", "teams", "delivery",
             "brands")
_DELIVERY = {
    "max_attempts": Field(int, 5, positive),
    "base_delay": Field(float, 0.5, positive),
    "max_delay": Field(float, 30.0, positive),
    "deadline_seconds": Field(float, 120.0, positive),
    "attempt_timeout": Field(float, 10.0, positive),
}


@dataclass(frozen=True, slots=True)
class AlertConfig:
    source: str
    rules: RuleSet
    policy: PolicyConfig
    retry: dict[str, RetryPolicy] = field(default_factory=dict)
    health: dict[str, HealthRule] = field(default_factory=dict)
    summary: SummaryConfig = field(default_factory=SummaryConfig)

    def summary_recipients(self, team: str) -> dict[str, list[str]]:
        """Where ``team``'s daily summary goes: its warning e-mail route and the summary webhooks."""
        email = self.policy.routing.for_alert(_Addressee(team)).get("email", [])
        return {ch: rs for ch, rs in (("email", email), ("webhook", list(self.summary.webhooks))) if rs}

    def make_policy(self) -> AlertPolicy:
        return AlertPolicy(self.policy)


def parse_config(doc: Mapping[str, Any], source: str = "<config>", env: Mapping[str, str] | None = None) -> AlertConfig:
    unknown = sorted(set(doc) - set(TOP_LEVEL))
    if unknown:
        raise fail(source, unknown[0], f"unknown table (expected one of: {', '.join(TOP_LEVEL)})")
    rules = parse_rules(doc, source)
    policy = parse_policy(doc, source, env)
    retry: dict[str, RetryPolicy] = {}
    for ch, data in subtables(doc.get("delivery", {}), CHANNELS, "channel", source, "delivery").items():
        d = check_table(data, _DELIVERY, source, f"delivery.{ch}")
        retry[ch] = RetryPolicy(d["max_attempts"], d["base_delay"], d["max_delay"], d["deadline_seconds"],
                                d["attempt_timeout"])
    env_map = os.environ if env is None else env
    summary = parse_summary(doc, source, lambda values, ch, path: expand_recipients(values, ch, source, path, env_map))
    return AlertConfig(source, rules, policy, retry, parse_health(doc, source), summary)


@dataclass(frozen=True, slots=True)
class _Addressee:
    """What routing needs to find a team's recipients for a report that is not an alert."""

    team: str
    severity: str = "warning"
    brand: str = "*"


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> AlertConfig:
    """Load and validate the alerting TOML (default: the shipped one; ``BADBUZZ_ALERT_RULES`` overrides it)."""
    if path is None:
        path = (env if env is not None else os.environ).get("BADBUZZ_ALERT_RULES") or None
    doc, source = read_toml(path)
    return parse_config(doc, source, env)


def build_dispatcher(config: AlertConfig, env: Mapping[str, str] | None = None) -> Dispatcher:
    """Dispatcher with notifiers for every channel the routing uses; raises AlertConfigError if one is
    misconfigured (call it at start-up)."""
    used = config.policy.routing.channels_used() | ({"webhook"} if config.summary.webhooks else set())
    notifiers = build_notifiers(used, env)
    return Dispatcher(notifiers, config.policy.routing, config.retry)

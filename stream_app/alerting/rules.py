"""Alert rules as data: the TOML ``[settings]`` and ``[rules.*]`` tables, validated at load, and the
:class:`Candidate` alerts that :mod:`.engine` raises from them.

Rules (all in event time; see ``alert_rules.toml`` for the shipped values and why):

- ``negative_spike``: negatives of a brand in trailing windows, as an hourly rate, against the brand's own
  hourly median + k * MAD over days (:mod:`.detect`); one alert per ongoing storm.
- ``incident_spike``: the same per incident type (subject = the type); the fallback types listed in
  ``ignore`` (an unspecified complaint) never drive it.
- ``misclassification``: reports that the model was wrong, counted over a window (subject = ``"model"``).
- ``critical_claim``: claims with the configured urgency from wide-reach authors, grouped per brand per
  ``group_interval_minutes`` (Alertmanager's group_interval): one alert listing them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._schema import (
    AlertConfigError,
    Field,
    check_table,
    fail,
    non_negative,
    one_of,
    positive,
    str_list,
    unit_interval,
)
from .detect import SpikeParams, Tier
from .windows import Buckets

__all__ = [
    "AlertConfigError",
    "Candidate",
    "RuleSet",
    "SEVERITIES",
    "DEFAULT_RULES_PATH",
    "load_rules",
    "parse_rules",
    "severity_rank",
]

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "alert_rules.toml"
SEVERITIES = ("warning", "critical")
TEAMS = ("comms", "data_science", "devops")  # who is woken up: each rule names one (routing in policy.py)
RULE_NAMES = ("negative_spike", "incident_spike", "misclassification", "critical_claim")
URGENCIES = ("low", "medium", "critical")
STATUSES = ("firing", "resolved")
REASONS = ("new", "escalation", "repeat", "resolved")


def severity_rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) + 1 if severity in SEVERITIES else 0


def lifecycle(alerts: dict[str, Any], key: str, end_ms: int, severity: str | None, renotify_minutes: float,
              resolve_minutes: float) -> tuple[str, str, int] | None:
    """One alert per ``key`` while it lasts: the notice due at ``end_ms`` given the level now (``None``:
    quiet), as ``(reason, severity, incident start ms)`` with reason new | escalation | repeat | resolved, or
    None. ``alerts`` (key -> JSON-able state) is updated in place."""
    a = alerts.get(key)
    if severity is None:
        if a is not None and end_ms - a["last_hot"] >= resolve_minutes * 60_000:
            del alerts[key]
            return "resolved", a["severity"], a["since"]
        return None
    if a is None:
        alerts[key] = {"severity": severity, "since": end_ms, "notified": end_ms, "last_hot": end_ms}
        return "new", severity, end_ms
    a["last_hot"] = end_ms
    if severity_rank(severity) > severity_rank(a["severity"]):
        a.update(severity=severity, notified=end_ms)
        return "escalation", severity, a["since"]
    if renotify_minutes and end_ms - a["notified"] >= renotify_minutes * 60_000:
        a["notified"] = end_ms
        return "repeat", a["severity"], a["since"]
    return None


class AlertKeys:
    """Alertmanager-style keys shared by candidates and alerts.

    group = rule:brand:subject. dedup = the group + the incident's start: an ongoing incident keeps its key
    (its escalation differs by severity, hence by alert id); a repeat adds its window end, a resolution
    ``:resolved``. Same key + severity => same alert id, across restarts and replays.
    """

    __slots__ = ()
    rule: str
    brand: str
    subject: str | None
    window_start: str
    window_end: str
    incident_start: str | None
    status: str
    reason: str

    @property
    def group_key(self) -> str:
        return f"{self.rule}:{self.brand}:{self.subject}"

    @property
    def dedup_key(self) -> str:
        key = f"{self.group_key}:{self.incident_start or self.window_start}"
        if self.reason == "repeat":
            key += f"@{self.window_end}"
        if self.status == "resolved":
            key += ":resolved"
        return key


@dataclass(frozen=True, slots=True)
class Candidate(AlertKeys):
    """A rule's verdict on a final bucket; routed and delivered by the policy and notifiers."""

    rule: str
    severity: str
    brand: str
    subject: str
    window_start: str
    window_end: str
    observed: float
    baseline: float | None
    threshold: float
    samples: tuple[dict[str, Any], ...] = ()
    status: str = "firing"
    reason: str = "new"
    incident_start: str | None = None
    note: str | None = None
    team: str = "comms"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = [dict(s) for s in self.samples]
        return d


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class SpikeRule:
    name: str
    enabled: bool
    params: SpikeParams
    renotify_minutes: float
    resolve_minutes: float
    types: tuple[str, ...] = ()  # incident_spike only; empty = every type seen
    ignore: tuple[str, ...] = ()  # incident_spike only: fallback types that never drive it
    team: str = "comms"


@dataclass(frozen=True, slots=True)
class CountRule:
    name: str
    enabled: bool
    window_minutes: float
    tiers: dict[str, int]  # severity -> count; a severity may be absent (the seeds: 3 reports = critical)
    renotify_minutes: float
    resolve_minutes: float
    distinct_reporters: bool = True  # count reporters, not reports
    team: str = "data_science"

    def fired(self, count: int) -> list[str]:
        return [sev for sev in SEVERITIES if sev in self.tiers and count >= self.tiers[sev]]

    def threshold(self, severity: str | None) -> int:
        return self.tiers.get(severity or "", min(self.tiers.values()))


@dataclass(frozen=True, slots=True)
class ClaimRule:
    name: str
    enabled: bool
    urgency: str
    tiers: dict[str, int]  # severity -> min followers
    group_interval_minutes: float
    max_listed: int
    team: str = "comms"


@dataclass(frozen=True, slots=True)
class RuleSet:
    source: str
    buckets: Buckets
    allowed_lateness_seconds: float
    idle_flush_seconds: float
    negative_spike: SpikeRule
    incident_spike: SpikeRule
    misclassification: CountRule
    critical_claim: ClaimRule
    extra: dict[str, Any] = field(default_factory=dict)

    def rule(self, name: str) -> SpikeRule | CountRule | ClaimRule:
        return getattr(self, name)


def _int_list(value: list) -> str | None:
    if not value or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in value):
        return "expected a non-empty array of positive integers"
    return None


_LIFECYCLE = {
    "enabled": Field(bool, True),
    "team": Field(str, None, one_of(TEAMS, "team")),
    "renotify_minutes": Field(float, 240.0, non_negative),
    "resolve_minutes": Field(float, 60.0, positive),
}
_SPIKE = {
    **_LIFECYCLE,
    "windows_minutes": Field(list, [15, 30, 60], _int_list),
    "min_count": Field(int, 5, positive),
    "baseline_hours": Field(int, 168, positive),
    "warmup_hours": Field(int, 24, non_negative),
    "warmup_floor": Field(float, 0.0, non_negative),
    "warmup_factor": Field(float, 3.0, non_negative),
    "min_mad": Field(float, 1.0, non_negative),
    "significance": Field(float, 1.0, unit_interval),
    "test_at": Field(float, 0.5, lambda v: None if 0 <= v <= 1 else f"must be in [0, 1], got {v}"),
    "warning": Field(dict),
    "critical": Field(dict),
}
_SPIKE_TIER = {"floor": Field(float, check=non_negative), "k": Field(float, check=non_negative)}
_COUNT = {**_LIFECYCLE, "window_minutes": Field(float, 5.0, positive), "distinct_reporters": Field(bool, True),
          "warning": Field(dict, None), "critical": Field(dict, None)}
_COUNT_TIER = {"count": Field(int, check=positive)}
_CLAIM = {
    "enabled": Field(bool, True),
    "team": Field(str, None, one_of(TEAMS, "team")),
    "urgency": Field(str, "critical", lambda v: None if v in URGENCIES else f"unknown urgency {v!r}"),
    "group_interval_minutes": Field(float, 30.0, non_negative),
    "max_listed": Field(int, 5, positive),
    "warning": Field(dict),
    "critical": Field(dict),
}
_CLAIM_TIER = {"followers": Field(int, check=non_negative)}
_SETTINGS = {
    "bucket_seconds": Field(int, 60, positive),
    "allowed_lateness_seconds": Field(float, 30.0, non_negative),
    "idle_flush_seconds": Field(float, 30.0, positive),
}


def parse_rules(doc: Mapping[str, Any], source: str = "<rules>") -> RuleSet:
    """Build a :class:`RuleSet` from the parsed TOML document (``[settings]`` and ``[rules.*]``)."""
    settings = check_table(doc.get("settings", {}), _SETTINGS, source, "settings")
    rules = doc.get("rules")
    if rules is None:
        raise fail(source, "rules", "missing required table")
    if not isinstance(rules, Mapping):
        raise fail(source, "rules", "expected a table")
    unknown = sorted(set(rules) - set(RULE_NAMES))
    if unknown:
        raise fail(source, f"rules.{unknown[0]}", f"unknown rule (expected one of: {', '.join(RULE_NAMES)})")
    missing = [n for n in RULE_NAMES if n not in rules]
    if missing:
        raise fail(source, f"rules.{missing[0]}", "missing rule table (set enabled = false to turn it off)")

    def tiers(d: dict, spec: dict, path: str) -> dict[str, dict]:
        return {sev: check_table(d[sev], spec, source, f"{path}.{sev}") for sev in SEVERITIES}

    def ordered(path: str, warning: float, critical: float) -> None:
        if critical < warning:
            raise fail(source, f"{path}.critical", "critical threshold must not be below the warning threshold")

    def spike(name: str, extra: dict | None = None) -> tuple[SpikeRule, dict]:
        path = f"rules.{name}"
        d = check_table(rules[name], {**_SPIKE, **(extra or {})}, source, path)
        t = tiers(d, _SPIKE_TIER, path)
        ordered(path, t["warning"]["floor"], t["critical"]["floor"])
        ordered(path, t["warning"]["k"], t["critical"]["k"])
        params = SpikeParams(tuple(sorted(d["windows_minutes"])), d["min_count"], d["baseline_hours"],
                             d["warmup_hours"], d["min_mad"],
                             {sev: Tier(t[sev]["floor"], t[sev]["k"]) for sev in SEVERITIES},
                             d["warmup_floor"], d["warmup_factor"], d["significance"], d["test_at"])
        return SpikeRule(name, d["enabled"], params, d["renotify_minutes"], d["resolve_minutes"],
                         tuple(d.get("types") or ()), tuple(d.get("ignore") or ()), d["team"] or "comms"), d

    negative, _ = spike("negative_spike")
    incident, _ = spike("incident_spike", {"types": Field(list, [], str_list), "ignore": Field(list, [], str_list)})

    d = check_table(rules["misclassification"], _COUNT, source, "rules.misclassification")
    counts = {sev: check_table(d[sev], _COUNT_TIER, source, f"rules.misclassification.{sev}")["count"]
              for sev in SEVERITIES if d[sev] is not None}
    if not counts:
        raise fail(source, "rules.misclassification", "needs a [warning] or a [critical] tier (or both)")
    if len(counts) == 2:
        ordered("rules.misclassification", counts["warning"], counts["critical"])
    mis = CountRule("misclassification", d["enabled"], d["window_minutes"], counts, d["renotify_minutes"],
                    d["resolve_minutes"], d["distinct_reporters"], d["team"] or "data_science")

    d = check_table(rules["critical_claim"], _CLAIM, source, "rules.critical_claim")
    t = tiers(d, _CLAIM_TIER, "rules.critical_claim")
    ordered("rules.critical_claim", t["warning"]["followers"], t["critical"]["followers"])
    claim = ClaimRule("critical_claim", d["enabled"], d["urgency"], {s: t[s]["followers"] for s in SEVERITIES},
                      d["group_interval_minutes"], d["max_listed"], d["team"] or "comms")

    return RuleSet(
        source=source,
        buckets=Buckets(settings["bucket_seconds"]),
        allowed_lateness_seconds=settings["allowed_lateness_seconds"],
        idle_flush_seconds=settings["idle_flush_seconds"],
        negative_spike=negative,
        incident_spike=incident,
        misclassification=mis,
        critical_claim=claim,
    )


def read_toml(path: str | Path | None) -> tuple[dict[str, Any], str]:
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    source = str(p)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh), source
    except FileNotFoundError:
        raise AlertConfigError(f"{source}: file not found") from None
    except OSError as exc:
        raise AlertConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AlertConfigError(f"{source}: invalid TOML: {exc}") from None


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load only the rules of an alerting TOML file (default: the shipped ``alert_rules.toml``)."""
    doc, source = read_toml(path)
    return parse_rules(doc, source)



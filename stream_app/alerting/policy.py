"""Alert policy in Alertmanager vocabulary: dedup, cooldown, escalation, quiet hours, routing.

- dedup key  = ``rule:brand:subject:window_start`` (same key + severity => same alert id, across restarts);
- group key  = ``rule:brand:subject``; the cooldown applies per group;
- escalation = a higher severity during the cooldown is let through once (and restarts the cooldown);
- quiet hours per channel: deliveries on a quiet channel are not sent but folded into an email digest,
  sent when the channel's quiet hours end (see :meth:`PolicyEngine.pop_due_digest`).

All state is plain JSON-able dicts: one *group state* per group key (store it in a Faust table keyed by
``alert.group_key``), and a *digest* list (store it under one key, e.g. ``"__digest__"``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._schema import Field, check_table, fail, non_negative, str_list, subtables
from .rules import SEVERITIES, TEAMS, AlertKeys, Candidate, severity_rank

CHANNELS = ("email", "sms", "webhook", "console")
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:6066/dashboard"
MAX_IDS_PER_GROUP = 32

EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
PHONE_RE = re.compile(r"^\+[1-9]\d{6,14}$")
URL_RE = re.compile(r"^https?://[^\s]+$")
_VALIDATORS = {"email": (EMAIL_RE, "an e-mail address"), "sms": (PHONE_RE, "an E.164 phone number (+33612345678)"),
               "webhook": (URL_RE, "an http(s) URL"), "console": (re.compile(r"^(stdout|stderr|log)$"),
                                                                  "stdout, stderr or log")}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------------- alert


@dataclass(frozen=True, slots=True)
class Alert(AlertKeys):
    """An alert as published on the ``alerts`` topic (fields = ``events.AlertEvent``)."""

    id: str
    rule: str
    severity: str
    brand: str
    subject: str | None
    window_start: str
    window_end: str
    observed: float
    baseline: float | None
    threshold: float
    samples: tuple[dict[str, Any], ...] = ()  # <= 5 of {id, text, author, link}
    dashboard_url: str = ""
    created_at: str = ""
    status: str = "firing"  # firing | resolved
    reason: str = "new"  # new | escalation | repeat | resolved (the engine's lifecycle)
    incident_start: str | None = None
    note: str | None = None
    lang: str = "en"  # language of the alert texts: the brand's, from [brands.<brand>] in the alert rules
    team: str = "comms"  # who is told (the rule's team; routing per team in [teams.<team>.<severity>])

    @staticmethod
    def make_id(dedup_key: str, severity: str) -> str:
        return hashlib.sha256(f"{dedup_key}|{severity}".encode()).hexdigest()[:24]

    @classmethod
    def from_candidate(
        cls, c: Candidate, *, dashboard_url: str | None = None, created_at: str | None = None, lang: str = "en"
    ) -> Alert:
        alert_id = cls.make_id(c.dedup_key, c.severity)
        base = dashboard_url or os.environ.get("BADBUZZ_DASHBOARD_URL") or DEFAULT_DASHBOARD_URL
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}{urlencode({'brand': c.brand, 'alert': alert_id}, quote_via=quote)}"
        samples = tuple(_sample(s) for s in c.samples[:5])
        return cls(alert_id, c.rule, c.severity, c.brand, c.subject, c.window_start, c.window_end,
                   float(c.observed), None if c.baseline is None else float(c.baseline), float(c.threshold),
                   samples, url, created_at or now_iso(), c.status, c.reason, c.incident_start, c.note, lang,
                   c.team)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "rule": self.rule, "severity": self.severity, "brand": self.brand,
            "subject": self.subject, "window_start": self.window_start, "window_end": self.window_end,
            "observed": self.observed, "baseline": self.baseline, "threshold": self.threshold,
            "samples": [dict(s) for s in self.samples], "dashboard_url": self.dashboard_url,
            "created_at": self.created_at, "status": self.status, "reason": self.reason,
            "incident_start": self.incident_start, "note": self.note, "lang": self.lang, "team": self.team,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        samples = tuple(_sample(s) for s in (d.get("samples") or []))
        baseline = d.get("baseline")
        return cls(str(d["id"]), d["rule"], d["severity"], d["brand"], d.get("subject"), d["window_start"],
                   d["window_end"], float(d["observed"]), None if baseline is None else float(baseline),
                   float(d["threshold"]), samples, d.get("dashboard_url", ""), d.get("created_at", ""),
                   d.get("status", "firing"), d.get("reason", "new"), d.get("incident_start"), d.get("note"),
                   d.get("lang") or "en", d.get("team") if d.get("team") in TEAMS else "comms")


def _sample(s: Mapping[str, Any]) -> dict[str, Any]:
    """What an alert carries of a tweet (or of a misclassification report: what the model said and the fix)."""
    out = {"id": s.get("id"), "text": str(s.get("text", "")), "author": s.get("author"), "link": s.get("link")}
    if s.get("report"):
        out["report"] = dict(s["report"])
    return out


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily interval [start, end) in a time zone (may wrap past midnight) for one channel."""

    channel: str
    start: time
    end: time
    tz: str = "UTC"
    severities: tuple[str, ...] = SEVERITIES

    def active(self, epoch: float, severity: str | None = None) -> bool:
        if severity is not None and severity not in self.severities:
            return False
        t = datetime.fromtimestamp(epoch, ZoneInfo(self.tz)).time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


Routes = dict[str, dict[str, tuple[str, ...]]]  # severity -> channel -> recipients


@dataclass(frozen=True, slots=True)
class Routing:
    """Recipients per severity and channel (already env-expanded): the default ``[routing.<severity>]``, per
    team ``[teams.<team>.<severity>]`` and per brand and team ``[brands.<brand>.teams.<team>.<severity>]``,
    plus fallback and digest recipients.

    The most specific route that has any recipient wins: brand+team, then team, then the default, so an
    alert whose team has nobody configured still reaches the default recipients instead of nobody.
    """

    routes: Routes
    fallback: dict[str, tuple[str, ...]] = field(default_factory=dict)
    digest: tuple[str, ...] = ()
    teams: dict[str, Routes] = field(default_factory=dict)
    brands: dict[str, dict[str, Routes]] = field(default_factory=dict)  # brand -> team -> routes

    def for_severity(self, severity: str) -> dict[str, list[str]]:
        return _nonempty(self.routes.get(severity, {}))

    def for_alert(self, alert: Any) -> dict[str, list[str]]:
        """Recipients of ``alert`` (anything with ``severity``, ``team`` and ``brand``)."""
        team = getattr(alert, "team", "comms")
        for routes in (self.brands.get(alert.brand, {}).get(team), self.teams.get(team)):
            chosen = _nonempty((routes or {}).get(alert.severity, {}))
            if chosen:
                return chosen
        return self.for_severity(alert.severity)

    def channels_used(self) -> set[str]:
        every = [self.routes, *self.teams.values(), *(r for b in self.brands.values() for r in b.values())]
        used = {ch for routes in every for route in routes.values() for ch, rs in route.items() if rs}
        used |= {ch for ch, rs in self.fallback.items() if rs}
        if self.digest:
            used.add("email")
        return used


def _nonempty(route: Mapping[str, tuple[str, ...]]) -> dict[str, list[str]]:
    return {ch: list(rs) for ch, rs in route.items() if rs}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    cooldown_minutes: float = 0.0  # per group; the engine already keeps one alert per incident
    quiet_hours: dict[str, QuietHours] = field(default_factory=dict)
    routing: Routing = field(default_factory=lambda: Routing({}))
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    sent_retention_hours: float = 48.0
    sms_per_hour: int = 0  # per recipient; 0 = no budget
    brand_languages: dict[str, str] = field(default_factory=dict)  # brand -> language of its alert texts

    def language_of(self, brand: str) -> str:
        return self.brand_languages.get(brand, "en")

    def cooldown_seconds(self, rule: str) -> float:
        return 60.0 * self.cooldown_minutes


def _hhmm(value: str) -> str | None:
    return None if re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value) else f"expected HH:MM, got {value!r}"


_POLICY = {
    "cooldown_minutes": Field(float, 0.0, non_negative),
    "dashboard_url": Field(str, None, lambda v: None if URL_RE.match(v) else f"expected an http(s) URL, got {v!r}"),
    "sent_retention_hours": Field(float, 48.0, non_negative),
    "sms_per_hour": Field(int, 0, non_negative),
}
_QUIET = {
    "start": Field(str, check=_hhmm),
    "end": Field(str, check=_hhmm),
    "timezone": Field(str, "UTC"),
    "severities": Field(list, list(SEVERITIES), str_list),
    "enabled": Field(bool, True),
}
_ROUTE = {ch: Field(list, [], str_list) for ch in CHANNELS}
LANGUAGES = ("en", "fr")
_BRAND = {"language": Field(str, "en", lambda v: None if v in LANGUAGES else f"expected one of {LANGUAGES}, got {v!r}"),
          "teams": Field(dict, {})}


def expand_recipients(
    values: list[str], channel: str, source: str, path: str, env: Mapping[str, str]
) -> tuple[str, ...]:
    """Expand ``env:VAR`` entries (comma-separated values) and validate every recipient for its channel."""
    pattern, what = _VALIDATORS[channel]
    out: list[str] = []
    for v in values:
        origin = path
        if v.startswith("env:"):
            var = v[4:]
            origin = f"{path} (from ${var})"
            items = [x.strip() for x in env.get(var, "").split(",") if x.strip()]
        else:
            items = [v.strip()]
        for item in items:
            if not pattern.match(item):
                shown = mask_recipient(channel, item)
                raise fail(source, origin, f"{shown!r} is not {what}")
            if item not in out:
                out.append(item)
    return tuple(out)


def parse_policy(doc: Mapping[str, Any], source: str, env: Mapping[str, str] | None = None) -> PolicyConfig:
    env = os.environ if env is None else env
    p = check_table(doc.get("policy", {}), _POLICY, source, "policy")
    quiet: dict[str, QuietHours] = {}
    for ch, data in subtables(doc.get("quiet_hours", {}), CHANNELS, "channel", source, "quiet_hours").items():
        q = check_table(data, _QUIET, source, f"quiet_hours.{ch}")
        try:
            ZoneInfo(q["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise fail(source, f"quiet_hours.{ch}.timezone", f"unknown time zone {q['timezone']!r}") from None
        bad = [s for s in q["severities"] if s not in SEVERITIES]
        if bad:
            raise fail(source, f"quiet_hours.{ch}.severities", f"unknown severity {bad[0]!r}")
        if q["enabled"]:
            quiet[ch] = QuietHours(ch, time.fromisoformat(q["start"]), time.fromisoformat(q["end"]), q["timezone"],
                                   tuple(q["severities"]))
    r_doc = subtables(doc.get("routing", {}), (*SEVERITIES, "fallback", "digest"), "route", source, "routing")

    def severity_routes(doc: Any, path: str) -> Routes:
        doc = subtables(doc, SEVERITIES, "severity", source, path)
        out: Routes = {}
        for sev in SEVERITIES:
            r = check_table(doc.get(sev, {}), _ROUTE, source, f"{path}.{sev}")
            out[sev] = {ch: expand_recipients(r[ch], ch, source, f"{path}.{sev}.{ch}", env) for ch in CHANNELS}
        return out

    def team_routes(doc: Any, path: str) -> dict[str, Routes]:
        return {team: severity_routes(t, f"{path}.{team}")
                for team, t in subtables(doc, TEAMS, "team", source, path).items()}

    routes = severity_routes({sev: r_doc.get(sev, {}) for sev in SEVERITIES}, "routing")
    teams = team_routes(doc.get("teams", {}), "teams")
    fb = check_table(r_doc.get("fallback", {}), _ROUTE, source, "routing.fallback")
    fallback = {ch: expand_recipients(fb[ch], ch, source, f"routing.fallback.{ch}", env) for ch in CHANNELS}
    dg = check_table(r_doc.get("digest", {}), {"email": Field(list, [], str_list)}, source, "routing.digest")
    digest = expand_recipients(dg["email"], "email", source, "routing.digest.email", env)
    b_doc = doc.get("brands", {})
    if not isinstance(b_doc, Mapping):
        raise fail(source, "brands", "expected a table")
    brand_tables = {str(b): check_table(v, _BRAND, source, f"brands.{b}") for b, v in b_doc.items()}
    languages = {b: t["language"] for b, t in brand_tables.items()}
    brand_teams = {b: team_routes(t["teams"], f"brands.{b}.teams") for b, t in brand_tables.items() if t["teams"]}
    return PolicyConfig(
        cooldown_minutes=p["cooldown_minutes"],
        brand_languages=languages,
        quiet_hours=quiet,
        routing=Routing(routes, fallback, digest, teams, brand_teams),
        dashboard_url=p["dashboard_url"] or os.environ.get("BADBUZZ_DASHBOARD_URL") or DEFAULT_DASHBOARD_URL,
        sent_retention_hours=p["sent_retention_hours"],
        sms_per_hour=p["sms_per_hour"],
    )


# ----------------------------------------------------------------------------------------------- masking


def mask_phone(phone: str) -> str:
    """``+33612345678`` -> ``+33******78``."""
    p = str(phone)
    if len(p) <= 5:
        return "*" * len(p)
    return f"{p[:3]}******{p[-2:]}"


def mask_email(email: str) -> str:
    """``jane@example.com`` -> ``j***@example.com``."""
    local, at, domain = str(email).partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_recipient(channel: str, recipient: str) -> str:
    if channel == "sms":
        return mask_phone(recipient)
    if channel == "email":
        return mask_email(recipient)
    if channel == "webhook":
        return re.sub(r"^(https?://[^/]+).*$", r"\1/***", recipient)
    return recipient


# ----------------------------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one alert.

    ``channels``: channel -> recipients to deliver to now; ``deferred``: channel -> recipients held back by
    quiet hours (the alert has been added to the digest); ``state``: the new group state to store under
    ``alert.group_key`` (store it even when nothing is delivered).
    """

    alert: Alert
    deliver: bool
    reason: str  # new | repeat | escalation | duplicate | cooldown
    channels: dict[str, list[str]]
    deferred: dict[str, list[str]]
    state: dict[str, Any]


class AlertPolicy:
    """Pure decision functions over plain-dict state."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def decide(self, group_state: Mapping[str, Any] | None, alert: Alert, now: float) -> Decision:
        """Decide on ``alert`` given the stored state of its group (``None`` if none) at epoch ``now``.

        Use event time for ``now`` when replaying (deterministic), wall-clock otherwise.
        """
        st = dict(group_state or {})
        sent: dict[str, float] = dict(st.get("sent") or {})
        cooldown = self.config.cooldown_seconds(alert.rule)
        until = float(st.get("until", float("-inf")))
        prev_sev = st.get("severity")
        if alert.id in sent:
            reason = "duplicate"
        elif now >= until:
            reason = "repeat" if prev_sev else "new"
        elif severity_rank(alert.severity) > severity_rank(prev_sev):
            reason = "escalation"
        else:
            reason = "cooldown"
        deliver = reason in ("new", "repeat", "escalation")
        if deliver:
            sent[alert.id] = now
            st.update(severity=alert.severity, sent_at=now, until=now + cooldown, key=alert.dedup_key)
        horizon = now - 3600.0 * self.config.sent_retention_hours
        kept = sorted(((t, i) for i, t in sent.items() if t >= horizon or i == alert.id), reverse=True)
        st["sent"] = {i: t for t, i in kept[:MAX_IDS_PER_GROUP]}
        channels: dict[str, list[str]] = {}
        deferred: dict[str, list[str]] = {}
        if deliver:
            for ch, rcpts in self.config.routing.for_alert(alert).items():
                q = self.config.quiet_hours.get(ch)
                (deferred if q and q.active(now, alert.severity) else channels)[ch] = rcpts
        return Decision(alert, deliver, reason, channels, deferred, st)

    def add_to_digest(self, digest: list[dict[str, Any]] | None, decision: Decision, now: float) -> list[dict]:
        """New digest list with the decision's deferred deliveries folded in."""
        out = list(digest or [])
        for ch, rcpts in decision.deferred.items():
            out.append({"alert": decision.alert.to_dict(), "channel": ch, "recipients": list(rcpts), "queued_at": now})
        return out

    def split_due_digest(
        self, digest: list[dict[str, Any]] | None, now: float
    ) -> tuple[list[Alert], list[dict[str, Any]]]:
        """(alerts to e-mail now as one digest, remaining digest): entries whose channel is no longer quiet,
        provided e-mail itself is not quiet. Alerts appear once even if deferred on several channels."""
        due: list[Alert] = []
        keep: list[dict[str, Any]] = []
        email_q = self.config.quiet_hours.get("email")
        email_quiet = bool(email_q and email_q.active(now))
        seen: set[str] = set()
        for entry in digest or []:
            q = self.config.quiet_hours.get(entry["channel"])
            if email_quiet or (q and q.active(now)):
                keep.append(entry)
                continue
            a = Alert.from_dict(entry["alert"])
            if a.id not in seen:
                seen.add(a.id)
                due.append(a)
        return due, keep

    def digest_recipients(self, alerts: list[Alert]) -> list[str]:
        r = self.config.routing
        if r.digest:
            return list(r.digest)
        out: list[str] = []
        for a in alerts:
            for rc in r.for_alert(a).get("email", ()):
                if rc not in out:
                    out.append(rc)
        return out or list(r.fallback.get("email", ()))


class PolicyEngine:
    """Single-process convenience wrapper keeping ``{"groups": {...}, "digest": [...]}`` in ``self.state``."""

    def __init__(self, config: PolicyConfig, state: Mapping[str, Any] | None = None) -> None:
        self.policy = AlertPolicy(config)
        st = dict(state or {})
        self.state: dict[str, Any] = {"groups": dict(st.get("groups") or {}), "digest": list(st.get("digest") or [])}

    def process(self, alert: Alert | Candidate, now: float) -> Decision:
        if isinstance(alert, Candidate):
            alert = Alert.from_candidate(alert, dashboard_url=self.policy.config.dashboard_url)
        d = self.policy.decide(self.state["groups"].get(alert.group_key), alert, now)
        self.state["groups"][alert.group_key] = d.state
        if d.deferred:
            self.state["digest"] = self.policy.add_to_digest(self.state["digest"], d, now)
        return d

    def pop_due_digest(self, now: float) -> tuple[list[Alert], list[str]]:
        """Alerts due in a digest e-mail now and its recipients; removes them from the state."""
        due, keep = self.policy.split_due_digest(self.state["digest"], now)
        self.state["digest"] = keep
        return due, (self.policy.digest_recipients(due) if due else [])


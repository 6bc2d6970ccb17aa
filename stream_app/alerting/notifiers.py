"""Notification channels (SMTP e-mail, Twilio SMS, Slack-compatible webhook, console) and the Dispatcher.

Every notifier exposes a *synchronous* ``send_alert(recipient, alert, timeout, note=None)`` that raises
:class:`TransientError` (worth retrying: 5xx, 429, timeouts, refused connections) or :class:`PermanentError`.
The :class:`Dispatcher` runs them in threads with per-attempt timeouts, exponential backoff with jitter,
a per-channel deadline and a fallback to the other channel, and returns one :class:`DeliveryResult`
per (channel, recipient). Recipients are masked in logs; secrets are never logged.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import logging
import os
import random
import re
import smtplib
import ssl
import sys
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from ._schema import AlertConfigError
from .health import BRAND as HEALTH_BRAND
from .policy import Alert, Routing, mask_recipient
from .summary import Report
from .texts import phrase

log = logging.getLogger("badbuzz.alerting")

SMS_MAX_CHARS = 306  # two concatenated GSM-7 segments (2 x 153); always <= 320
TWILIO_API_PREFIX = re.compile(r"^https://[a-z0-9.-]*twilio\.com", re.IGNORECASE)


class DeliveryError(Exception):
    transient = False


class TransientError(DeliveryError):
    transient = True


class PermanentError(DeliveryError):
    transient = False


# ---------------------------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5  # seconds; attempt n waits ~ base * 2**(n-1), capped, with jitter
    max_delay: float = 30.0
    deadline: float = 120.0  # total seconds per (channel, recipient) delivery
    attempt_timeout: float = 10.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """'Equal jitter': half the capped exponential delay plus a random half."""
        d = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return d / 2 + rng.uniform(0, d / 2)


@dataclass(slots=True)
class DeliveryResult:
    channel: str
    recipient: str
    ok: bool
    attempts: int
    error: str | None = None
    alert_id: str | None = None
    fallback_for: str | None = None  # set when this delivery replaced a failed channel
    elapsed_s: float = 0.0
    skipped: bool = False  # already delivered earlier (``skip``)

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.recipient}"

    def to_dict(self, *, mask: bool = True) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "recipient": mask_recipient(self.channel, self.recipient) if mask else self.recipient,
            "ok": self.ok,
            "attempts": self.attempts,
            "error": self.error,
            "alert_id": self.alert_id,
            "fallback_for": self.fallback_for,
            "elapsed_s": round(self.elapsed_s, 3),
            "skipped": self.skipped,
        }


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


UNEXPECTED_ATTEMPTS = 2  # a bug is likely to fail again; a glitch (a closed socket mid-call) gets one retry


async def send_with_retry(
    channel: str,
    recipient: str,
    send,  # callable(timeout: float) -> None, blocking
    policy: RetryPolicy,
    rng: random.Random | None = None,
    alert_id: str | None = None,
) -> DeliveryResult:
    """Run the blocking ``send`` in a thread with retries; never raises for delivery failures."""
    rng = rng or random.Random()
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + policy.deadline
    attempts = 0
    error: str | None = None
    shown = mask_recipient(channel, recipient)
    about = {"alert_id": alert_id, "channel": channel}  # JSON log fields (stream_app/logs.py)
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            error = f"deadline of {policy.deadline:g}s exceeded; last error: {error}"
            break
        attempts += 1
        timeout = max(0.05, min(policy.attempt_timeout, remaining))
        try:
            await asyncio.wait_for(asyncio.to_thread(send, timeout), timeout + 1.0)
        except PermanentError as exc:
            error = _describe(exc)
            log.warning("alert %s: %s to %s failed permanently: %s", alert_id, channel, shown, error, extra=about)
            return DeliveryResult(channel, recipient, False, attempts, error, alert_id,
                                  elapsed_s=loop.time() - start)
        except (TransientError, TimeoutError) as exc:
            error = _describe(exc) if str(exc) else f"timeout after {timeout:g}s"
        except Exception as exc:  # an unexpected error in a notifier: one more try, then a recorded failure
            error = _describe(exc)
            log.exception("alert %s: %s to %s: unexpected error (attempt %d)", alert_id, channel, shown, attempts,
                          extra=about)
            if attempts >= min(UNEXPECTED_ATTEMPTS, policy.max_attempts):
                return DeliveryResult(channel, recipient, False, attempts, error, alert_id,
                                      elapsed_s=loop.time() - start)
        else:
            log.info("alert %s: delivered by %s to %s (attempt %d)", alert_id, channel, shown, attempts, extra=about)
            return DeliveryResult(channel, recipient, True, attempts, None, alert_id, elapsed_s=loop.time() - start)
        if attempts >= policy.max_attempts:
            error = f"gave up after {attempts} attempts; last error: {error}"
            break
        delay = policy.backoff(attempts, rng)
        log.info("alert %s: %s to %s attempt %d failed (%s); retrying in %.2fs",
                 alert_id, channel, shown, attempts, error, delay, extra=about)
        if loop.time() + delay >= deadline:
            error = f"deadline of {policy.deadline:g}s exceeded; last error: {error}"
            break
        await asyncio.sleep(delay)
    log.warning("alert %s: %s to %s failed: %s", alert_id, channel, shown, error, extra=about)
    return DeliveryResult(channel, recipient, False, attempts, error, alert_id, elapsed_s=loop.time() - start)


# -------------------------------------------------------------------------------------------- rendering


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"


def _hm(iso_ts: str) -> str:
    return iso_ts[11:16] if len(iso_ts) >= 16 else iso_ts


# Tweet content (text, author, id, brand) is untrusted: a 150k-follower account can put a phishing link in
# front of the comms team. Plain-text fields are made single-line (no injected lines or e-mail headers),
# URLs and host names are defanged AFTER any normalisation (NFKD turned fullwidth letters into a live URL),
# and webhook markup is escaped (tests/test_security.py).
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")  # zero-width, bidi controls
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\s]+")
_SCHEME = re.compile(r"(?i)\bh(?:tt|xx)p(s?):(?:/|\\)*")
_OTHER_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15}):(//|\\\\)")
_HOST = re.compile(r"(?:[^\W_](?:[\w-]{0,62})\.)+[^\W\d_]{2,63}\b|\b\d{1,3}(?:\.\d{1,3}){3}\b")
TWEET_LINK = re.compile(r"^https://(?:twitter\.com|x\.com|t\.co)/[\w/-]{1,200}$", re.ASCII)  # stays a live link


def one_line(value: Any) -> str:
    """Untrusted text as one line: line breaks and control characters become spaces, invisible ones go."""
    return _BREAKS.sub(" ", _INVISIBLE.sub("", str(value))).strip()


def defang(text: str) -> str:
    """Make URLs and host names non-clickable (``hxxps://evil[.]example/r``), after NFKC folding.

    Idempotent, so already defanged text stays as it is.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _SCHEME.sub(lambda m: f"hxxp{m.group(1)}://", text)
    text = _OTHER_SCHEME.sub(lambda m: f"{m.group(1)}[:]//" if m.group(1).lower() not in ("hxxp", "hxxps")
                             else m.group(0), text)
    return _HOST.sub(lambda m: m.group(0).replace(".", "[.]"), text)


def _safe_sample(s: Mapping[str, Any]) -> dict[str, Any]:
    link = s.get("link")
    if link and not TWEET_LINK.match(str(link)):
        link = defang(one_line(link))
    out = {**s, "id": one_line(s.get("id") or ""), "text": defang(one_line(s.get("text", ""))),
           "author": defang(one_line(s["author"])) if s.get("author") else s.get("author"), "link": link}
    if isinstance(s.get("report"), Mapping):
        out["report"] = {k: defang(one_line(str(v)))[:128] for k, v in s["report"].items() if v is not None}
    return out


def report_line(s: Mapping[str, Any]) -> str:
    """What a misclassification report says (a safe sample): the model's label, the fix and who made it."""
    r = s.get("report") or {}
    return f"model said {r.get('predicted', '?')}, corrected to {r.get('correct', '?')} by {r.get('reporter', '?')}"


def untrusted(alert: Alert) -> Alert:
    """A copy of ``alert`` safe to put in a plain-text or HTML message (see the comment above)."""
    def line(v: str | None) -> str | None:
        return None if v is None else one_line(v)

    return replace(alert, id=one_line(alert.id), brand=defang(one_line(alert.brand)),
                   subject=None if alert.subject is None else defang(one_line(alert.subject)),
                   window_start=one_line(alert.window_start), window_end=one_line(alert.window_end),
                   created_at=one_line(alert.created_at), incident_start=line(alert.incident_start),
                   note=line(alert.note), dashboard_url=one_line(alert.dashboard_url),
                   samples=tuple(_safe_sample(s) for s in alert.samples))


def slack_escape(text: str) -> str:
    """Slack/mrkdwn control characters as entities: ``<!channel>`` and ``<url|text>`` become inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def describe(alert: Alert) -> str:
    """One line, in the brand's language: what was observed against what."""
    lang = alert.lang
    subject = f" [{alert.subject}]" if alert.subject and alert.subject not in ("negative", "claims", "model") else ""
    figures = {"observed": _fmt(alert.observed), "baseline": _fmt(alert.baseline), "threshold": _fmt(alert.threshold)}
    if alert.status == "resolved":
        what = phrase(lang, "resolved", threshold=figures["threshold"], start=_hm(alert.incident_start or ""))
    elif alert.rule == "critical_claim":
        what = phrase(lang, "claims", **figures)
    elif alert.rule == "misclassification":
        what = phrase(lang, "reports", **figures)
    elif alert.brand == HEALTH_BRAND and alert.note:  # the worker's own health: the note says it all
        return f"{alert.rule} on the badbuzz worker: {alert.note}"
    else:
        what = phrase(lang, "rate", **figures) + (phrase(lang, "still") if alert.reason == "repeat" else "")
    name = phrase(lang, alert.rule) if lang != "en" else alert.rule
    return f"{name}{subject} {phrase(lang, 'on')} {alert.brand}: {what}"


def render_subject(alert: Alert) -> str:
    alert = untrusted(alert)  # a brand with CR/LF once made the e-mail library raise
    return f"[badbuzz][{phrase(alert.lang, alert.severity)}] {alert.rule} - {alert.brand}" + (
        f" ({alert.subject})" if alert.subject and alert.rule == "incident_spike" else ""
    )


def render_text(alert: Alert, note: str | None = None) -> str:
    alert, note = untrusted(alert), None if note is None else one_line(note)
    lines = []
    if note:
        lines += [note, ""]
    lines += [
        f"Severity: {alert.severity.upper()}",
        f"Rule:     {alert.rule}",
        f"Brand:    {alert.brand}",
        f"Subject:  {alert.subject}",
        f"Window:   {alert.window_start} -> {alert.window_end}",
        f"Observed: {_fmt(alert.observed)}   Baseline: {_fmt(alert.baseline)}   Threshold: {_fmt(alert.threshold)}",
        "",
        describe(alert),
        "",
    ]
    if alert.samples:
        lines.append(phrase(alert.lang, "telling"))
        for s in alert.samples:
            if s.get("report"):
                lines.append(f"  - \"{s.get('text', '')}\" ({report_line(s)}; tweet {s.get('id')})")
                continue
            lines.append(f"  - @{s.get('author') or '?'}: {s.get('text', '')}")
            if s.get("link"):
                lines.append(f"    {s['link']}")
        lines.append("")
    lines += [f"{phrase(alert.lang, 'dashboard')}: {alert.dashboard_url}",
              f"Alert id: {alert.id}   Created: {alert.created_at}"]
    return "\n".join(lines) + "\n"


def render_html(alert: Alert, note: str | None = None) -> str:
    alert, e = untrusted(alert), html.escape
    color = "#b00020" if alert.severity == "critical" else "#b26a00"
    rows = [("Rule", alert.rule), ("Brand", alert.brand), ("Subject", alert.subject or ""),
            ("Window", f"{alert.window_start} → {alert.window_end}"), ("Observed", _fmt(alert.observed)),
            ("Baseline", _fmt(alert.baseline)), ("Threshold", _fmt(alert.threshold))]
    parts = ["<html><body style=\"font-family:sans-serif\">"]
    if note:
        parts.append(f"<p><strong>{e(note)}</strong></p>")
    parts.append(f"<h2 style=\"color:{color}\">{e(alert.severity.upper())}: {e(describe(alert))}</h2><table>")
    parts += [f"<tr><th align=\"left\">{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows]
    parts.append("</table>")
    if alert.samples:
        parts.append("<h3>Most telling tweets</h3><ul>")
        for s in alert.samples:
            link = s.get("link")
            text = e(s.get("text", ""))
            body = f"<a href=\"{e(link)}\">{text}</a>" if link and TWEET_LINK.match(link) else text
            if s.get("report"):
                parts.append(f"<li>{body} <em>({e(report_line(s))})</em></li>")
                continue
            parts.append(f"<li><strong>@{e(s.get('author') or '?')}</strong>: {body}</li>")
        parts.append("</ul>")
    parts.append(f"<p><a href=\"{e(alert.dashboard_url)}\">Open the dashboard</a></p>")
    parts.append(f"<p style=\"color:#777\">Alert {e(alert.id)} · {e(alert.created_at)}</p></body></html>")
    return "".join(parts)


# GSM 03.38 basic set is a superset of these ASCII characters; extension characters count double.
_GSM_EXT = set("^{}\\[~]|€")
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def gsm_length(text: str) -> int | None:
    """Septets needed in GSM-7, or None if the text needs UCS-2."""
    n = 0
    for ch in text:
        if ch in _GSM_BASIC:
            n += 1
        elif ch in _GSM_EXT:
            n += 2
        else:
            return None
    return n


def sms_segments(text: str) -> int:
    n = gsm_length(text)
    if n is None:  # UCS-2: 70 / 67 per segment (UTF-16 code units)
        units = len(text.encode("utf-16-le")) // 2
        return 1 if units <= 70 else -(-units // 67)
    return 1 if n <= 160 else -(-n // 153)


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[\^{}\\\[\]~|`]", "", text)
    return re.sub(r"\s+", " ", text).strip()


def render_sms(alert: Alert, note: str | None = None, limit: int = SMS_MAX_CHARS) -> str:
    """Plain GSM-7 text of at most ``limit`` characters (2 segments), the dashboard link always last."""
    # Defang after _ascii: its NFKD folding can turn look-alike characters into a URL.
    level = phrase(alert.lang, alert.severity)
    head = defang(_ascii(f"{'' if not note else note + ' '}badbuzz {level} {describe(alert)}, "
                         f"{_hm(alert.window_start)}-{_hm(alert.window_end)}Z."))
    url = _ascii(alert.dashboard_url)
    if len(url) > limit // 2:
        url = ""
    sample = ""
    if alert.samples:
        s = alert.samples[0]
        sample = defang(_ascii(f'@{s.get("author") or "?"}: "{s.get("text", "")}"'))
    budget = limit - len(url) - (1 if url else 0)
    body = head
    if sample and len(head) + 1 + 20 <= budget:
        room = budget - len(head) - 1
        body = f"{head} {sample if len(sample) <= room else sample[: room - 4].rstrip() + '...' + chr(34)}"
    if len(body) > budget:
        body = body[: budget - 3].rstrip() + "..."
    text = f"{body} {url}" if url else body
    return text[:limit]


def render_digest(alerts: Sequence[Alert]) -> tuple[str, str, str]:
    """(subject, text, html) of a digest of alerts held back by quiet hours."""
    alerts = [untrusted(a) for a in alerts]
    subject = f"[badbuzz] Digest: {len(alerts)} alert(s) held during quiet hours"
    text = "\n".join([subject, ""] + [f"- {a.severity.upper()} {a.window_start}: {describe(a)}\n  {a.dashboard_url}"
                                       for a in alerts]) + "\n"
    items = "".join(f"<li><strong>{html.escape(a.severity.upper())}</strong> {html.escape(a.window_start)}: "
                    f"{html.escape(describe(a))} — <a href=\"{html.escape(a.dashboard_url)}\">dashboard</a></li>"
                    for a in alerts)
    return subject, text, f"<html><body><h2>{html.escape(subject)}</h2><ul>{items}</ul></body></html>"


# --------------------------------------------------------------------------------------------- notifiers


class Notifier(Protocol):
    channel: str

    def send_alert(self, recipient: str, alert: Alert, timeout: float, note: str | None = None) -> None: ...


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "badbuzz@localhost"
    starttls: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        env = os.environ if env is None else env
        port_s = env.get("BADBUZZ_SMTP_PORT") or "1025"
        try:
            port = int(port_s)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise AlertConfigError(f"env BADBUZZ_SMTP_PORT: expected a TCP port, got {port_s!r}") from None
        user = env.get("BADBUZZ_SMTP_USER") or None
        password = env.get("BADBUZZ_SMTP_PASSWORD") or None
        if user and not password:
            raise AlertConfigError("env BADBUZZ_SMTP_PASSWORD: required when BADBUZZ_SMTP_USER is set")
        return cls(env.get("BADBUZZ_SMTP_HOST") or "127.0.0.1", port, user, password,
                   env.get("BADBUZZ_SMTP_FROM") or "badbuzz@localhost", _truthy(env.get("BADBUZZ_SMTP_STARTTLS")))


class EmailNotifier:
    channel = "email"

    def __init__(self, settings: SmtpSettings | None = None) -> None:
        self.settings = settings or SmtpSettings.from_env()

    def _message(self, recipient: str, subject: str, text: str, html_body: str, msg_id: str | None) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.settings.sender
        msg["To"] = recipient
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{msg_id}@badbuzz>" if msg_id else make_msgid(domain="badbuzz")
        msg.set_content(text)
        msg.add_alternative(html_body, subtype="html")
        return msg

    def send_alert(self, recipient: str, alert: Alert, timeout: float, note: str | None = None) -> None:
        msg = self._message(recipient, render_subject(alert), render_text(alert, note), render_html(alert, note),
                            f"{alert.id}.{'fb' if note else 'a'}")
        msg["X-Badbuzz-Alert-Id"] = alert.id
        self._send(msg, recipient, timeout)

    def send_digest(self, recipient: str, alerts: Sequence[Alert], timeout: float) -> None:
        subject, text, html_body = render_digest(alerts)
        self._send(self._message(recipient, subject, text, html_body, None), recipient, timeout)

    def send_report(self, recipient: str, report: Report, timeout: float) -> None:
        self._send(self._message(recipient, one_line(report.subject), report.text, report.html,
                                 report.id.replace(":", ".")), recipient, timeout)

    def _send(self, msg: EmailMessage, recipient: str, timeout: float) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=timeout) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.user:
                    smtp.login(s.user, s.password or "")
                smtp.send_message(msg, from_addr=s.sender, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            cls = TransientError if codes and all(400 <= c < 500 for c in codes) else PermanentError
            raise cls(f"recipient refused ({', '.join(map(str, codes))})") from None
        except smtplib.SMTPResponseException as exc:
            cls = TransientError if 400 <= exc.smtp_code < 500 else PermanentError
            detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise cls(f"SMTP {exc.smtp_code} {str(detail)[:120]}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP server does not support: {exc}") from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # refused, reset, timeout, DNS
            raise TransientError(_describe(exc)) from None
        except smtplib.SMTPException as exc:
            raise PermanentError(_describe(exc)) from None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str
    base_url: str | None = None  # e.g. http://127.0.0.1:8099 for tests

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TwilioSettings:
        env = os.environ if env is None else env
        missing = [v for v in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM") if not env.get(v)]
        if missing:
            raise AlertConfigError(f"env {', '.join(missing)}: required because SMS alerting is enabled "
                                   "(a route lists sms recipients)")
        base = (env.get("BADBUZZ_TWILIO_BASE_URL") or "").rstrip("/") or None
        if base:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise AlertConfigError(f"env BADBUZZ_TWILIO_BASE_URL: expected an http(s) URL, got {base!r}")
            if parts.scheme == "http" and not _is_loopback(parts.hostname):
                raise AlertConfigError("env BADBUZZ_TWILIO_BASE_URL: plain http is only allowed on loopback "
                                       "(credentials would travel in clear)")
        return cls(env["TWILIO_ACCOUNT_SID"], env["TWILIO_AUTH_TOKEN"], env["TWILIO_FROM"], base)


def _twilio_http_client(base_url: str | None, timeout: float):
    from twilio.http.http_client import TwilioHttpClient

    class _Client(TwilioHttpClient):
        """Requests go to ``base_url`` instead of ``https://*.twilio.com`` when it is set."""

        def request(self, method, url, *args, **kwargs):  # type: ignore[override]
            if base_url:
                url = TWILIO_API_PREFIX.sub(base_url, url, count=1)
            return super().request(method, url, *args, **kwargs)

    quiet = logging.getLogger("badbuzz.alerting.twilio")  # the SDK logs URLs and headers (no body) at INFO
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)
    return _Client(pool_connections=False, timeout=timeout, logger=quiet)


class SmsNotifier:
    channel = "sms"

    def __init__(self, settings: TwilioSettings | None = None) -> None:
        self.settings = settings or TwilioSettings.from_env()

    def send_alert(self, recipient: str, alert: Alert, timeout: float, note: str | None = None) -> None:
        self.send_text(recipient, render_sms(alert, note), timeout)

    def was_sent(self, recipient: str, alert: Alert, timeout: float, note: str | None = None) -> bool:
        """Ask Twilio whether this alert's text already went to ``recipient`` (among its 50 latest messages).

        Used only for a delivery whose outcome a crash left unknown, so the SMS is not sent twice.
        """
        body = render_sms(alert, note)
        try:
            recent = self._client(timeout).messages.list(to=recipient, limit=50)
        except Exception as exc:  # noqa: BLE001 - unknown stays unknown: the caller sends (at-least-once)
            log.warning("alert %s: could not list sent SMS: %s", alert.id, _describe(exc))
            return False
        return any(m.body == body for m in recent)

    def _client(self, timeout: float):
        from twilio.rest import Client

        s = self.settings
        return Client(s.account_sid, s.auth_token, http_client=_twilio_http_client(s.base_url, timeout))

    def send_text(self, recipient: str, body: str, timeout: float) -> None:
        import requests
        from twilio.base.exceptions import TwilioException, TwilioRestException

        s = self.settings
        client = self._client(timeout)
        try:
            client.messages.create(to=recipient, from_=s.from_number, body=body)
        except TwilioRestException as exc:
            cls = TransientError if exc.status == 429 or exc.status >= 500 else PermanentError
            raise cls(f"Twilio HTTP {exc.status} code {exc.code}: {str(exc.msg)[:120]}") from None
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(type(exc).__name__) from None
        except TwilioException as exc:
            raise PermanentError(_describe(exc)) from None


class WebhookNotifier:
    """POST a Slack-compatible JSON payload (``{"text": ...}`` plus the alert) to the recipient URL."""

    channel = "webhook"

    def send_alert(self, recipient: str, alert: Alert, timeout: float, note: str | None = None) -> None:
        safe = untrusted(alert)
        url = quote(safe.dashboard_url, safe=":/?#[]@!$&'()*+,;=%")  # no <, > or | to break the link markup
        text = f"*{safe.severity.upper()}* {slack_escape(describe(safe))} <{url}|dashboard>"
        text = f"{slack_escape(one_line(note))} {text}" if note else text
        self._post(recipient, {"text": text, "alert": alert.to_dict()}, timeout)

    def send_report(self, recipient: str, report: Report, timeout: float) -> None:
        text = f"*{slack_escape(report.subject)}*\n```{slack_escape(report.text)}```"
        self._post(recipient, {"text": text, "summary": report.data}, timeout)

    def _post(self, recipient: str, body: dict[str, Any], timeout: float) -> None:
        payload = json.dumps(body).encode()
        req = urllib.request.Request(recipient, data=payload, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "badbuzz"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - URL comes from config
                resp.read(1024)
        except urllib.error.HTTPError as exc:
            cls = TransientError if exc.code == 429 or exc.code >= 500 else PermanentError
            raise cls(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(_describe(exc)) from None


class ConsoleNotifier:
    """Writes the alert as it would be sent (the embedded/demo default). Recipient: stdout, stderr or log."""

    channel = "console"

    def __init__(self, stream=None) -> None:
        self.stream = stream

    def send_alert(self, recipient: str, alert: Alert, timeout: float, note: str | None = None) -> None:
        text = render_text(alert, note)
        if recipient == "log":
            log.warning("ALERT %s", text)
            return
        stream = self.stream or (sys.stderr if recipient == "stderr" else sys.stdout)
        stream.write(f"---- {render_subject(alert)}\n{text}SMS: {render_sms(alert)}\n")
        stream.flush()


# --------------------------------------------------------------------------------------------- dispatch

FALLBACK_CHANNEL = {"sms": "email", "email": "sms", "webhook": "email", "console": None}
FALLBACK_NOTE = {"sms": "SMS delivery failed; sent by e-mail instead.",
                 "webhook": "Webhook delivery failed; sent by e-mail instead."}


class Dispatcher:
    """Deliver an alert to every channel/recipient with retries and fallback; returns the results.

    ``notifiers``: channel -> notifier; ``routing``: recipients by severity and fallback recipients;
    ``retry``: channel -> :class:`RetryPolicy` (default ``RetryPolicy()``).
    """

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        routing: Routing | None = None,
        retry: Mapping[str, RetryPolicy] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.notifiers = dict(notifiers)
        self.routing = routing or Routing({})
        self.retry = dict(retry or {})
        self.rng = rng or random.Random()

    def _policy(self, channel: str) -> RetryPolicy:
        return self.retry.get(channel) or RetryPolicy()

    async def _one(self, channel: str, recipient: str, alert: Alert, note: str | None,
                   fallback_for: str | None) -> DeliveryResult:
        notifier = self.notifiers.get(channel)
        if notifier is None:
            return DeliveryResult(channel, recipient, False, 0, f"channel {channel!r} is not configured", alert.id,
                                  fallback_for)
        res = await send_with_retry(
            channel, recipient, lambda t: notifier.send_alert(recipient, alert, t, note), self._policy(channel),
            self.rng, alert.id,
        )
        res.fallback_for = fallback_for
        return res

    async def _reconcile(self, channel: str, recipient: str, alert: Alert) -> DeliveryResult:
        notifier = self.notifiers.get(channel)
        check = getattr(notifier, "was_sent", None)
        if check is not None:
            timeout = self._policy(channel).attempt_timeout
            try:
                sent = await asyncio.wait_for(asyncio.to_thread(check, recipient, alert, timeout), timeout + 1.0)
            except TimeoutError:
                sent = False
            if sent:
                log.info("alert %s: %s to %s was already sent before the restart", alert.id, channel,
                         mask_recipient(channel, recipient))
                return DeliveryResult(channel, recipient, True, 0, None, alert.id, skipped=True)
        return await self._one(channel, recipient, alert, None, None)

    async def deliver(
        self,
        alert: Alert,
        channels: Mapping[str, Sequence[str]] | None = None,
        *,
        skip: Container[str] = (),
        uncertain: Container[str] = (),
    ) -> list[DeliveryResult]:
        """Deliver ``alert`` to ``channels`` (default: the routing for its severity).

        ``skip`` holds ``"channel:recipient"`` keys already delivered for this alert id (e.g. from a
        changelog-backed table after a restart); they are reported with ``skipped=True`` and not re-sent.
        ``uncertain`` holds keys whose delivery was started but not confirmed before a crash: a channel
        that can ask its provider (SMS: Twilio's message list) checks first; others send again (the
        e-mail carries the same Message-ID, so mailboxes keep one copy).
        Permanently failed channels fall back once to the other channel's fallback recipients.
        """
        targets = {ch: list(r) for ch, r in (channels if channels is not None
                                            else self.routing.for_alert(alert)).items()}
        results: list[DeliveryResult] = []
        jobs = []
        for ch, rcpts in targets.items():
            for r in rcpts:
                if f"{ch}:{r}" in skip:
                    results.append(DeliveryResult(ch, r, True, 0, None, alert.id, skipped=True))
                elif f"{ch}:{r}" in uncertain:
                    jobs.append(self._reconcile(ch, r, alert))
                else:
                    jobs.append(self._one(ch, r, alert, None, None))
        results += await asyncio.gather(*jobs)
        results += await self._fallback(alert, results, skip)
        return results

    async def _fallback(self, alert: Alert, results: list[DeliveryResult],
                        skip: Container[str]) -> list[DeliveryResult]:
        delivered = {r.key for r in results if r.ok}
        failed_channels = sorted({r.channel for r in results if not r.ok})
        jobs = []
        planned: set[str] = set()
        for ch in failed_channels:
            other = FALLBACK_CHANNEL.get(ch)
            if not other:
                continue
            for r in self.routing.fallback.get(other, ()):
                key = f"{other}:{r}"
                if key in delivered or key in skip or key in planned:
                    continue
                planned.add(key)
                note = FALLBACK_NOTE.get(ch) if other == "email" else f"({ch} failed)"
                log.warning("alert %s: %s failed, falling back to %s for %s", alert.id, ch, other,
                            mask_recipient(other, r))
                jobs.append(self._one(other, r, alert, note, ch))
        return list(await asyncio.gather(*jobs))

    async def deliver_digest(self, alerts: Sequence[Alert], recipients: Iterable[str]) -> list[DeliveryResult]:
        """E-mail one digest of ``alerts`` (held back by quiet hours) to each recipient."""
        alerts = list(alerts)
        notifier = self.notifiers.get("email")
        if not alerts:
            return []
        results = []
        for r in recipients:
            if notifier is None or not hasattr(notifier, "send_digest"):
                results.append(DeliveryResult("email", r, False, 0, "channel 'email' is not configured"))
                continue
            results.append(await send_with_retry(
                "email", r, lambda t, r=r: notifier.send_digest(r, alerts, t), self._policy("email"), self.rng,
                "digest",
            ))
        return results


    async def deliver_report(self, report: Report, recipients: Mapping[str, Sequence[str]]) -> list[DeliveryResult]:
        """Send a report (the daily summary) to ``recipients`` (channel -> recipients: e-mail and webhook)."""
        jobs, failed = [], []
        for ch, rcpts in recipients.items():
            notifier = self.notifiers.get(ch)
            for r in rcpts:
                if notifier is None or not hasattr(notifier, "send_report"):  # a failure, as for a digest
                    failed.append(DeliveryResult(ch, r, False, 0, f"channel {ch!r} cannot carry a report", report.id))
                    continue
                jobs.append(send_with_retry(ch, r, lambda t, n=notifier, r=r: n.send_report(r, report, t),
                                            self._policy(ch), self.rng, report.id))
        return failed + list(await asyncio.gather(*jobs))


def build_notifiers(channels: Iterable[str], env: Mapping[str, str] | None = None) -> dict[str, Notifier]:
    """Notifiers for the channels in use, configured from env; raises AlertConfigError when incomplete."""
    out: dict[str, Notifier] = {}
    for ch in set(channels):
        if ch == "email":
            out[ch] = EmailNotifier(SmtpSettings.from_env(env))
        elif ch == "sms":
            out[ch] = SmsNotifier(TwilioSettings.from_env(env))
        elif ch == "webhook":
            out[ch] = WebhookNotifier()
        elif ch == "console":
            out[ch] = ConsoleNotifier()
    return out


from __future__ import annotations

import asyncio
import dataclasses
import html
import io
import logging
import random
import time

import pytest

from stream_app.alerting import AlertConfigError
from stream_app.alerting.notifiers import (
    ConsoleNotifier,
    Dispatcher,
    EmailNotifier,
    RetryPolicy,
    SmsNotifier,
    SmtpSettings,
    TwilioSettings,
    build_notifiers,
    render_sms,
    render_subject,
    render_text,
    sms_segments,
)
from stream_app.alerting.policy import Alert, Routing
from stream_app.alerting.rules import Candidate

from ..servers import SmtpServer, refused_port

FAST = RetryPolicy(max_attempts=4, base_delay=0.02, max_delay=0.1, deadline=5.0, attempt_timeout=1.0)
PHONE = "+33612345678"
MAIL = "jane@example.com"


def make_alert(severity="critical", text="the flight was cancelled and nobody helps, awful") -> Alert:
    samples = tuple({"id": str(i), "text": f"{text} #{i} é ü 🚨", "author": f"user{i}", "link": f"https://t.co/{i}",
                     "score": 3.0 - i} for i in range(3))
    c = Candidate("negative_spike", severity, "acme-air", "negative", "2024-05-01T10:25:00Z",
                  "2024-05-01T10:30:00Z", 135.0, 12.4, 40.0, samples)
    return Alert.from_candidate(c, dashboard_url="http://127.0.0.1:6066/dashboard", created_at="2024-05-01T10:30:01Z")


def routing(email=(MAIL,), sms=(PHONE,), fb_email=(MAIL,), fb_sms=(PHONE,)) -> Routing:
    route = {"email": tuple(email), "sms": tuple(sms)}
    return Routing({"warning": {"email": tuple(email)}, "critical": route},
                   {"email": tuple(fb_email), "sms": tuple(fb_sms)})


def dispatcher(smtp_env: dict, twilio_env: dict, **kw) -> Dispatcher:
    notifiers = {"email": EmailNotifier(SmtpSettings.from_env(smtp_env)),
                 "sms": SmsNotifier(TwilioSettings.from_env(twilio_env))}
    return Dispatcher(notifiers, kw.pop("routing", routing()), {"email": FAST, "sms": FAST}, random.Random(1))


async def test_delivers_email_and_sms_to_real_servers(smtp_server, twilio_server, caplog):
    caplog.set_level(logging.DEBUG)
    d = dispatcher(smtp_server.env(), twilio_server.env())
    a = make_alert()
    results = await d.deliver(a)
    assert sorted((r.channel, r.ok, r.attempts) for r in results) == [("email", True, 1), ("sms", True, 1)]
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == [MAIL] and mail.subject == "[badbuzz][CRITICAL] negative_spike - acme-air"
    text, html_body = mail.text(), mail.html()
    assert "135/h vs usual 12.4/h (threshold 40/h)" in text and a.dashboard_url in text and "@user0" in text
    assert "<a href=\"https://t.co/0\">" in html_body and mail.message["X-Badbuzz-Alert-Id"] == a.id
    [sms] = twilio_server.messages
    assert sms.to == PHONE and sms.from_ == "+15005550006"
    assert len(sms.body) <= 320 and sms_segments(sms.body) <= 2 and a.dashboard_url in sms.body
    # logs never contain full recipients or secrets
    logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("badbuzz", "twilio")))
    assert PHONE not in logs and MAIL not in logs and twilio_server.state.auth_token not in logs
    assert "+33******78" in logs and "j***@example.com" in logs
    assert results[0].to_dict()["recipient"] in ("j***@example.com", "+33******78")


async def test_uncertain_delivery_is_reconciled_with_twilio(smtp_server, twilio_server):
    """After a crash between 'started' and 'confirmed', the SMS already at Twilio is not sent again."""
    d = dispatcher(smtp_server.env(), twilio_server.env(), routing=routing(email=()))
    sent, unsent = make_alert(), make_alert(text="another alert, never sent")
    await d.deliver(sent)
    [res] = await d.deliver(sent, uncertain={f"sms:{PHONE}"})
    assert res.ok and res.skipped and len(twilio_server.messages) == 1 and twilio_server.state.list_requests == 1
    [res] = await d.deliver(unsent, uncertain={f"sms:{PHONE}"})  # Twilio never got it: sent now
    assert res.ok and not res.skipped and len(twilio_server.messages) == 2
    # e-mail cannot be asked: it is sent again, with the same Message-ID so mailboxes keep one copy
    d = dispatcher(smtp_server.env(), twilio_server.env(), routing=routing(sms=()))
    await d.deliver(sent)
    await d.deliver(sent, uncertain={f"email:{MAIL}"})
    first, second = smtp_server.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]


async def test_sms_retries_5xx_then_recovers(smtp_server, twilio_server):
    twilio_server.script.extend([500, 503, 429])
    d = dispatcher(smtp_server.env(), twilio_server.env(), routing=routing(email=()))
    [res] = await d.deliver(make_alert())
    assert res.ok and res.attempts == 4 and res.channel == "sms"
    assert len(twilio_server.messages) == 1 and twilio_server.requests == 4


async def test_sms_hang_times_out_then_recovers(smtp_server, twilio_server):
    twilio_server.state.hang_seconds = 3
    twilio_server.script.append("hang")
    pol = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=5, attempt_timeout=0.3)
    d = dispatcher(smtp_server.env(), twilio_server.env(), routing=routing(email=()))
    d.retry["sms"] = pol
    t = time.monotonic()
    [res] = await d.deliver(make_alert())
    assert res.ok and res.attempts == 2 and time.monotonic() - t < 2.5


async def test_sms_permanent_error_falls_back_to_email(smtp_server, twilio_server):
    twilio_server.script.append(400)  # e.g. invalid 'To' number: not retried
    d = dispatcher(smtp_server.env(), twilio_server.env(), routing=routing(email=()))
    results = await d.deliver(make_alert())
    sms = [r for r in results if r.channel == "sms"][0]
    assert not sms.ok and sms.attempts == 1 and "400" in sms.error
    fb = [r for r in results if r.channel == "email"][0]
    assert fb.ok and fb.fallback_for == "sms"
    [mail] = smtp_server.wait_for(1)
    assert "SMS delivery failed" in mail.text()


async def test_sms_persistent_5xx_gives_up_and_falls_back(smtp_server, twilio_server):
    twilio_server.script.extend([500] * 10)
    d = dispatcher(smtp_server.env(), twilio_server.env(), routing=routing(email=()))
    results = await d.deliver(make_alert())
    sms = [r for r in results if r.channel == "sms"][0]
    assert not sms.ok and sms.attempts == FAST.max_attempts and "gave up" in sms.error
    assert [r.fallback_for for r in results if r.channel == "email"] == ["sms"]


async def test_smtp_refused_retries_then_falls_back_to_sms(twilio_server):
    sock, port = refused_port()
    try:
        env = {"BADBUZZ_SMTP_HOST": "127.0.0.1", "BADBUZZ_SMTP_PORT": str(port)}
        d = dispatcher(env, twilio_server.env(), routing=routing(sms=()))
        results = await d.deliver(make_alert(severity="warning"))
    finally:
        sock.close()
    email_res = [r for r in results if r.channel == "email"][0]
    assert not email_res.ok and email_res.attempts == FAST.max_attempts
    assert "ConnectionRefusedError" in email_res.error
    [sms] = [r for r in results if r.channel == "sms"]
    assert sms.ok and sms.fallback_for == "email"
    assert len(twilio_server.messages) == 1


async def test_smtp_down_then_recovers_within_deadline(twilio_server):
    with SmtpServer() as smtp:
        smtp.pause()
        d = dispatcher(smtp.env(), twilio_server.env(), routing=routing(sms=()))
        d.retry["email"] = RetryPolicy(max_attempts=20, base_delay=0.05, max_delay=0.1, deadline=5, attempt_timeout=1)
        async def recover():
            await asyncio.sleep(0.3)
            smtp.resume()

        results, _ = await asyncio.gather(d.deliver(make_alert(severity="warning")), recover())
        [res] = results
        assert res.ok and res.attempts > 1
        assert len(smtp.wait_for(1)) == 1 and twilio_server.messages == []


async def test_smtp_4xx_retried_5xx_permanent(smtp_server, twilio_server):
    smtp_server.script.extend(["451 4.3.0 try later", "451 4.3.0 try later"])
    d = dispatcher(smtp_server.env(), twilio_server.env(), routing=routing(sms=(), fb_sms=()))
    [res] = await d.deliver(make_alert(severity="warning"))
    assert res.ok and res.attempts == 3
    smtp_server.script.append("550 5.7.1 rejected")
    [res] = await d.deliver(make_alert(severity="warning"))
    assert not res.ok and res.attempts == 1 and "550" in res.error


async def test_deadline_bounds_total_time(twilio_server):
    sock, port = refused_port()
    try:
        env = {"BADBUZZ_SMTP_HOST": "127.0.0.1", "BADBUZZ_SMTP_PORT": str(port)}
        d = dispatcher(env, twilio_server.env(), routing=routing(sms=(), fb_sms=()))
        d.retry["email"] = RetryPolicy(max_attempts=100, base_delay=0.1, max_delay=0.2, deadline=0.6,
                                       attempt_timeout=0.5)
        t = time.monotonic()
        [res] = await d.deliver(make_alert(severity="warning"))
    finally:
        sock.close()
    assert not res.ok and "deadline" in res.error and time.monotonic() - t < 1.5


async def test_skip_already_delivered(smtp_server, twilio_server):
    d = dispatcher(smtp_server.env(), twilio_server.env())
    results = await d.deliver(make_alert(), skip={f"sms:{PHONE}"})
    assert {(r.channel, r.skipped) for r in results} == {("email", False), ("sms", True)}
    assert twilio_server.messages == []


async def test_digest_email(smtp_server, twilio_server):
    d = dispatcher(smtp_server.env(), twilio_server.env())
    [res] = await d.deliver_digest([make_alert(), make_alert("warning")], [MAIL])
    assert res.ok
    [mail] = smtp_server.wait_for(1)
    assert "Digest: 2 alert(s)" in mail.subject and mail.text().count("negative_spike") == 2


def test_twilio_wrong_credentials_is_permanent(twilio_server):
    from stream_app.alerting.notifiers import PermanentError

    env = twilio_server.env() | {"TWILIO_AUTH_TOKEN": "wrong"}
    with pytest.raises(PermanentError, match="401"):
        SmsNotifier(TwilioSettings.from_env(env)).send_text(PHONE, "hi", 1.0)


def test_missing_twilio_credentials_is_a_config_error():
    with pytest.raises(AlertConfigError, match="TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM: required"):
        build_notifiers({"sms"}, env={})
    with pytest.raises(AlertConfigError, match="only allowed on loopback"):
        TwilioSettings.from_env({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM": "+1555",
                                 "BADBUZZ_TWILIO_BASE_URL": "http://example.com"})
    assert "supersecret" not in repr(TwilioSettings("AC1", "supersecret", "+1"))
    assert "supersecret" not in repr(SmtpSettings(password="supersecret"))


def test_build_dispatcher_from_config_requires_twilio_when_sms_routed():
    from stream_app.alerting import build_dispatcher, load_config

    cfg = load_config(env={"BADBUZZ_ALERT_EMAILS": MAIL, "BADBUZZ_ALERT_PHONES": PHONE})
    with pytest.raises(AlertConfigError, match="TWILIO"):
        build_dispatcher(cfg, env={})
    cfg = load_config(env={"BADBUZZ_ALERT_EMAILS": MAIL})
    assert set(build_dispatcher(cfg, env={}).notifiers) == {"email"}


@pytest.mark.parametrize("text", ["short", "x" * 2000, "émoji 🚨 " * 100, "[{brackets}] ~^|\\ " * 30])
def test_sms_body_fits_two_segments(text):
    a = make_alert(text=text)
    body = render_sms(a)
    assert len(body) <= 320 and sms_segments(body) <= 2
    assert body.startswith("badbuzz CRITICAL negative_spike on acme-air")
    assert body.endswith(a.dashboard_url)  # the link is never truncated


def test_console_notifier():
    buf = io.StringIO()
    ConsoleNotifier(buf).send_alert("stdout", make_alert(), 1.0)
    out = buf.getvalue()
    assert "[badbuzz][CRITICAL]" in out and "SMS: badbuzz CRITICAL" in out


# -- issue 19, finding 6: tweet content is untrusted in every alert text -------------------------------------
PHISH = "Reset your badbuzz login now: https://badbuzz-sso.evil.example/r"
FULLWIDTH = "ｈｔｔｐｓ：／／ｅｖｉｌ．ｅｘａｍｐｌｅ／ｘ"


def hostile_alert(brand: str = "acme-air\r\nBcc: boss@evil.example") -> Alert:
    samples = ({"id": "1\n\nURGENT: call +33 6 00 00 00 00", "text": PHISH, "author": "bigaccount",
                "link": "https://evil.example/status/1"},
               {"id": "2", "text": FULLWIDTH, "author": "x\u202eevil", "link": "https://twitter.com/x/status/2"})
    c = Candidate("negative_spike", "critical", brand, "negative", "2024-05-01T10:25:00Z",
                  "2024-05-01T10:30:00Z", 135.0, 12.4, 40.0, samples)
    return Alert.from_candidate(c, dashboard_url="http://127.0.0.1:6066/dashboard", created_at="2024-05-01T10:30:01Z")


def test_defang_and_one_line():
    from stream_app.alerting.notifiers import defang, one_line

    assert defang(PHISH).endswith("hxxps://badbuzz-sso[.]evil[.]example/r")
    assert defang(FULLWIDTH) == "hxxps://evil[.]example/x" and defang(defang(PHISH)) == defang(PHISH)
    assert defang("see evil.example or 10.0.0.1, ftp://host.example") == \
        "see evil[.]example or 10[.]0[.]0[.]1, ftp[:]//host[.]example"
    assert defang("135/h vs usual 12.4/h, 10:30Z.") == "135/h vs usual 12.4/h, 10:30Z."
    assert one_line("a\r\nb\u2028c\x00d\u202e") == "a b c d"


async def test_alert_texts_defang_urls_and_stay_single_line(smtp_server, twilio_server):
    d = dispatcher(smtp_server.env(), twilio_server.env())
    a = hostile_alert()
    results = await d.deliver(a)
    assert all(r.ok for r in results), [r.to_dict() for r in results]  # the CR/LF brand no longer raises
    [mail] = smtp_server.wait_for(1)
    assert "\n" not in mail.subject and "Bcc" not in mail.message.keys() and not mail.message["Bcc"]
    text, html_body = mail.text(), mail.html()
    for body in (text, html.unescape(html_body)):
        body = body.replace(a.dashboard_url, "")  # ours; it carries the brand URL-encoded
        assert "https://badbuzz-sso" not in body and "evil.example" not in body and "https://evil" not in body
        assert "hxxps://badbuzz-sso[.]evil[.]example/r" in body and "hxxps://evil[.]example/x" in body
    assert "\n\nURGENT" not in text and "\u202e" not in text
    assert 'href="https://twitter.com/x/status/2"' in html_body and 'href="https://evil' not in html_body
    [sms] = twilio_server.messages
    assert sms.body.endswith(a.dashboard_url) and "\r" not in sms.body
    head = sms.body.removesuffix(a.dashboard_url)
    assert "https://badbuzz" not in head and "https://evil" not in head and "evil.example" not in head
    assert "hxxps://badbuzz-sso[." in head  # truncated to fit two segments, defanged before
    fullwidth = render_sms(dataclasses.replace(a, samples=(a.samples[1],)))
    assert "hxxps://evil[.]example/x" in fullwidth and "https://evil" not in fullwidth


def test_webhook_escapes_slack_markup():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from stream_app.alerting.notifiers import WebhookNotifier

    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - stdlib hook name
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        a = hostile_alert(brand="<!channel> <https://evil.example|click> & co")
        WebhookNotifier().send_alert(f"http://127.0.0.1:{httpd.server_address[1]}/hook", a, 5.0, note="<!here>")
    finally:
        httpd.shutdown()
    text = got[0]["text"]
    assert "<!channel>" not in text and "<!here>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "&amp; co" in text and "&lt;!here&gt;" in text
    assert text.count("<") == 1 and text.endswith("|dashboard>")


def test_a_french_brand_gets_french_alert_texts():
    c = Candidate("incident_spike", "critical", "freebox", "network", "2026-11-30T15:00:00Z", "2026-11-30T15:15:00Z",
                  168, 2, 80, ({"id": "1", "text": "@freebox panne internet", "author": "u1", "link": None},))
    fr = Alert.from_candidate(c, lang="fr")
    assert "[CRITIQUE]" in render_subject(fr) and "chez freebox" in render_sms(fr)
    assert "d'habitude" in render_text(fr) and "Tableau de bord" in render_text(fr)
    en = Alert.from_candidate(c)
    assert "[CRITICAL]" in render_subject(en) and "vs usual 2/h" in render_sms(en)


def test_an_unexpected_notifier_error_is_retried_once_then_recorded():
    import asyncio

    from stream_app.alerting.notifiers import send_with_retry

    calls = []

    def flaky(timeout: float) -> None:
        calls.append(timeout)
        if len(calls) == 1:
            raise RuntimeError("socket closed mid-call")

    ok = asyncio.run(send_with_retry("email", "a@example.com", flaky, FAST, alert_id="x"))
    assert ok.ok and ok.attempts == 2

    def broken(timeout: float) -> None:
        raise KeyError("a bug")

    res = asyncio.run(send_with_retry("email", "a@example.com", broken, FAST, alert_id="x"))
    assert not res.ok and res.attempts == 2 and "KeyError" in res.error


async def test_webhook_delivery_retries_a_transient_failure_and_stops_on_a_permanent_one(webhook_server):
    from stream_app.alerting.notifiers import WebhookNotifier

    hooks = {"webhook": (webhook_server.url,)}
    d = Dispatcher({"webhook": WebhookNotifier()}, Routing({"warning": hooks, "critical": hooks}),
                   {"webhook": FAST}, random.Random(1))
    webhook_server.fail_with = [503]  # one transient failure: retried
    [res] = await d.deliver(make_alert())
    assert res.ok and res.attempts == 2 and len(webhook_server.posts) == 1
    post = webhook_server.posts[0]
    assert post["alert"]["rule"] == "negative_spike" and post["alert"]["brand"] == "acme-air"
    assert post["text"].startswith("*CRITICAL* negative_spike on acme-air") and post["text"].endswith("|dashboard>")
    webhook_server.fail_with = [404]  # a wrong URL: no retry
    [res] = await d.deliver(make_alert(severity="warning"))
    assert not res.ok and res.attempts == 1 and "HTTP 404" in res.error and len(webhook_server.posts) == 1

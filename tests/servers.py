"""Real local servers for notifier tests (reusable by integration tests): SMTP (aiosmtpd) and a fake
Twilio Messages REST API, both on 127.0.0.1 with ephemeral ports, both with scripted faults.

Usage as pytest fixtures: ``smtp_server`` / ``twilio_server`` (see ``conftest.py``), or directly::

    with SmtpServer() as smtp, TwilioServer() as twilio:
        env = smtp.env() | twilio.env()
"""

from __future__ import annotations

import asyncio
import base64
import collections
import email
import email.policy
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.smtp import SMTP

HOST = "127.0.0.1"


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp, session, envelope):  # noqa: N802 - aiosmtpd hook name
        action = self.server._next_action()
        if action is not None:
            return action  # e.g. "451 4.3.0 try again later" / "550 5.7.1 rejected"
        self.server.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


class SmtpServer:
    """aiosmtpd SMTP server in a background thread with its own event loop.

    ``script``: queued DATA replies (``"451 ..."`` transient, ``"550 ..."`` permanent); when empty, accept.
    ``pause()`` closes the listener (connections refused), ``resume()`` listens again on the same port.
    """

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.host = host
        self.port = port
        self.messages: list[ReceivedMail] = []
        self.script: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-test-server", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def _next_action(self) -> str | None:
        with self._lock:
            return self.script.popleft() if self.script else None

    def _call(self, coro, timeout: float = 5.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self) -> None:
        handler = _Handler(self)
        self._server = await self._loop.create_server(
            lambda: SMTP(handler, hostname="badbuzz-test", ident="badbuzz test SMTP"),
            self.host, self.port, reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def start(self) -> SmtpServer:
        self._thread.start()
        self._call(self._listen())
        return self

    def pause(self) -> None:
        self._call(self._close())

    def resume(self) -> None:
        self._call(self._listen())

    def stop(self) -> None:
        try:
            self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def env(self) -> dict[str, str]:
        return {"BADBUZZ_SMTP_HOST": self.host, "BADBUZZ_SMTP_PORT": str(self.port),
                "BADBUZZ_SMTP_FROM": "badbuzz@example.com"}

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        end = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < end:
            time.sleep(0.01)
        return list(self.messages)

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def refused_port(host: str = HOST) -> tuple[socket.socket, int]:
    """A bound but non-listening TCP socket: connecting to its port is refused. Close it when done."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s, s.getsockname()[1]


@dataclass
class SentSms:
    account_sid: str
    to: str
    from_: str
    body: str
    sid: str
    auth_ok: bool


@dataclass
class _TwilioState:
    account_sid: str
    auth_token: str
    messages: list[SentSms] = field(default_factory=list)
    requests: int = 0
    list_requests: int = 0
    script: collections.deque = field(default_factory=collections.deque)
    hang_seconds: float = 5.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class _TwilioHandler(BaseHTTPRequestHandler):
    state: _TwilioState  # set on the subclass
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: int, message: str) -> None:
        self._json(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                            "status": status})

    def do_POST(self) -> None:  # noqa: N802 - stdlib hook name
        st = self.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        with st.lock:
            st.requests += 1
            action = st.script.popleft() if st.script else None
        parts = self.path.split("?")[0].strip("/").split("/")
        # 2010-04-01 / Accounts / {sid} / Messages.json
        if len(parts) != 4 or parts[0] != "2010-04-01" or parts[1] != "Accounts" or parts[3] != "Messages.json":
            return self._error(404, 20404, "The requested resource was not found")
        if action == "hang":
            st.stopping.wait(st.hang_seconds)
            return self._error(503, 20503, "slow")
        if isinstance(action, int):
            return self._error(action, 20429 if action == 429 else 20500 if action >= 500 else 21211,
                               f"scripted error {action}")
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{st.account_sid}:{st.auth_token}".encode()).decode()
        if auth != expected or parts[2] != st.account_sid:
            return self._error(401, 20003, "Authenticate")
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        missing = [k for k in ("To", "From", "Body") if not form.get(k)]
        if missing:
            return self._error(400, 21604, f"A '{missing[0]}' parameter is required.")
        sid = "SM" + uuid.uuid4().hex
        sms = SentSms(parts[2], form["To"], form["From"], form["Body"], sid, True)
        with st.lock:
            st.messages.append(sms)
        self._json(201, _message_json(sms))

    def do_GET(self) -> None:  # noqa: N802 - stdlib hook name
        """``GET .../Messages.json?To=...&PageSize=n``: the latest messages first, one page."""
        st = self.state
        path, _, query = self.path.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "2010-04-01" or parts[1] != "Accounts" or parts[3] != "Messages.json":
            return self._error(404, 20404, "The requested resource was not found")
        expected = "Basic " + base64.b64encode(f"{st.account_sid}:{st.auth_token}".encode()).decode()
        if self.headers.get("Authorization", "") != expected or parts[2] != st.account_sid:
            return self._error(401, 20003, "Authenticate")
        args = {k: v[0] for k, v in parse_qs(query).items()}
        size = int(args.get("PageSize", 50))
        with st.lock:
            st.list_requests += 1
            found = [m for m in reversed(st.messages) if "To" not in args or m.to == args["To"]][:size]
        self._json(200, {"messages": [_message_json(m) for m in found], "page": 0, "page_size": size, "start": 0,
                         "end": max(0, len(found) - 1), "uri": self.path, "first_page_uri": self.path,
                         "next_page_uri": None, "previous_page_uri": None})


def _message_json(m: SentSms) -> dict[str, Any]:
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    return {
        "account_sid": m.account_sid, "api_version": "2010-04-01", "body": m.body, "date_created": now,
        "date_sent": None, "date_updated": now, "direction": "outbound-api", "error_code": None,
        "error_message": None, "from": m.from_, "messaging_service_sid": None, "num_media": "0",
        "num_segments": "1", "price": None, "price_unit": "USD", "sid": m.sid, "status": "queued",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{m.account_sid}/Messages/{m.sid}/Media.json"},
        "to": m.to, "uri": f"/2010-04-01/Accounts/{m.account_sid}/Messages/{m.sid}.json",
    }


class TwilioServer:
    """A local HTTP server speaking Twilio's ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

    ``script``: queued behaviours for the next requests: an int status (500, 503, 429, 400...) or
    ``"hang"`` (hold the request ``hang_seconds`` then 503); when empty, 201 with a queued message.
    """

    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "test-token-not-a-secret") -> None:
        self.state = _TwilioState(account_sid, auth_token)
        handler = type("Handler", (_TwilioHandler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer((HOST, 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="twilio-test-server",
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def messages(self) -> list[SentSms]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def script(self) -> collections.deque:
        return self.state.script

    @property
    def requests(self) -> int:
        return self.state.requests

    def env(self, from_number: str = "+15005550006") -> dict[str, str]:
        return {"TWILIO_ACCOUNT_SID": self.state.account_sid, "TWILIO_AUTH_TOKEN": self.state.auth_token,
                "TWILIO_FROM": from_number, "BADBUZZ_TWILIO_BASE_URL": self.base_url}

    def start(self) -> TwilioServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> TwilioServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class WebhookServer:
    """A local HTTP endpoint for webhooks (Slack-compatible JSON): records each POST; ``fail_with`` holds the
    statuses to answer first (e.g. ``[503]`` for one transient failure)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.fail_with: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib hook name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = server.fail_with.pop(0) if server.fail_with else 200
                if status == 200:
                    server.posts.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._httpd.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < end:
            time.sleep(0.05)
        return list(self.posts)

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

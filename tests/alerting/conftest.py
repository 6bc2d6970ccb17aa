from __future__ import annotations

import pytest

from .servers import SmtpServer, TwilioServer


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def twilio_server():
    with TwilioServer() as server:
        yield server

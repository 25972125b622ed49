"""Real receivers on loopback for the tests: an SMTP server (aiosmtpd) and a webhook endpoint
(http.server), each recording what it got."""

from __future__ import annotations

import email
import json
import threading
import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from loop_data import free_port


class MailBox:
    """An aiosmtpd server on 127.0.0.1 keeping every message it accepts (parsed)."""

    def __init__(self, port: int | None = None, login: tuple[str, str] | None = None):
        self.port = port or free_port()
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        options = {}
        if login is not None:
            options = {"authenticator": self._authenticate, "auth_require_tls": False, "auth_required": True}
        self._login = login
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == self._login
        )
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        parsed = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def start(self) -> MailBox:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for rcpt, m in self.messages if address in rcpt]


def text_of(message: email.message.EmailMessage) -> str:
    """Every text part of a message, attachments included, decoded."""
    parts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return "\n".join(parts)


class Hook:
    """A webhook endpoint on 127.0.0.1: records each POST (headers, in lower case, and JSON); when ``slow`` it
    waits longer than the sender's timeout before answering."""

    def __init__(self):
        self.received: list[tuple[dict, dict]] = []
        self.too_late: list[dict] = []
        self.slow = 0.0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hook.slow:
                    hook.too_late.append({k.lower(): v for k, v in self.headers.items()})
                    time.sleep(hook.slow)
                else:
                    hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/services/T000/B000/s3cr3tPath"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Hook:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

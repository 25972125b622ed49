"""Mail: building the messages RelQ sends (alerts, digests) and handing them to the mail server.

The server is ``RELQ_SMTP_URL`` (``smtp://[user:password@]host:port``, ``smtps://…`` for TLS,
``?starttls=true`` to upgrade a plain connection); the sender ``RELQ_MAIL_FROM``. Python's own
``smtplib`` talks to it. Every failure becomes one sentence naming the server (never the password)
and what to check: :class:`relq.exceptions.DeliveryFailed`.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from relq.core.settings import SmtpServer
from relq.exceptions import DeliveryFailed

__all__ = ["build_message", "smtp_session", "send_one", "explain_smtp_error"]


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    message_key: str,
) -> str:
    """A whole MIME message as text (stored in the outbox as it will be sent).

    ``attachments`` are (file name, MIME type, bytes). ``message_key`` makes the Message-ID, so a
    retried delivery carries the same one and a receiver can drop a repeat.
    """
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = " ".join(subject.split())
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(idstring=message_key.replace("@", ".").replace(":", "."), domain="relq")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, mime, data in attachments:
        maintype, _, subtype = mime.partition("/")
        if maintype == "text":  # declared UTF-8, so every mail reader shows its accents and dashes
            msg.add_attachment(
                data.decode("utf-8"), subtype=subtype, charset="utf-8", cte="base64", filename=name
            )
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_string()


def explain_smtp_error(exc: BaseException, server: SmtpServer, to: str | None = None) -> str:
    """One sentence for a failed mail delivery: what happened and what to check."""
    where = server.where

    def answer(code, message) -> str:
        text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        return f"{code} {' '.join(text.split())}".strip()

    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (
            f"The mail server at {where} refused the login for {server.user!r} "
            f"({answer(exc.smtp_code, exc.smtp_error)}); check the user and password in RELQ_SMTP_URL."
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return (
            f"The mail server at {where} does not offer a login ({exc}); remove user:password from "
            "RELQ_SMTP_URL, or use smtps:// or ?starttls=true if it needs TLS first."
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, message = next(iter(exc.recipients.values()), (0, b""))
        return f"The mail server at {where} refused the recipient {to} ({answer(code, message)})."
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return (
            f"The mail server at {where} refused the sender {exc.sender} ({answer(exc.smtp_code, exc.smtp_error)}); "
            "check RELQ_MAIL_FROM."
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"The mail server at {where} closed the connection ({exc or 'no reason given'})."
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"The mail server at {where} answered {answer(exc.smtp_code, exc.smtp_error)}."
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS with the mail server at {where} failed ({exc.reason or exc}); smtps:// needs a server that "
            "speaks TLS on that port, smtp:// one that does not."
        )
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"The mail server at {where} did not answer in time; check RELQ_SMTP_URL and the network."
    if isinstance(exc, socket.gaierror):
        return f"Cannot find the mail server {server.host!r} (unknown host); check RELQ_SMTP_URL."
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"Cannot reach the mail server at {where} ({reason}); check RELQ_SMTP_URL and that the server is running."
    return f"Sending mail through {where} failed: {exc}"


@contextlib.contextmanager
def smtp_session(server: SmtpServer, timeout: float) -> Iterator[smtplib.SMTP]:
    """A connection to the mail server, logged in when the URL has a user; DeliveryFailed otherwise."""
    try:
        if server.tls:
            client = smtplib.SMTP_SSL(
                server.host, server.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=timeout)
        try:
            client.ehlo()
            if server.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if server.user:
                client.login(server.user, server.password or "")
        except BaseException:
            client.close()
            raise
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(explain_smtp_error(exc, server)) from None
    try:
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()


def send_one(client: smtplib.SMTP, server: SmtpServer, sender: str, to: str, message: str) -> None:
    """Hand one stored message to the server for one recipient; DeliveryFailed with a sentence."""
    try:
        refused = client.sendmail(sender, [to], message.encode("utf-8"))
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(explain_smtp_error(exc, server, to)) from None
    if refused:
        raise DeliveryFailed(explain_smtp_error(smtplib.SMTPRecipientsRefused(refused), server, to))

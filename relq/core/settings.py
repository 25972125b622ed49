"""RelQ's settings, declared once with default and help text, read from the environment.

A wrong value stops start-up with a sentence saying what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from relq.exceptions import SettingError

__all__ = [
    "PROJECT_ROOT",
    "Setting",
    "SETTINGS",
    "Settings",
    "SmtpServer",
    "load_settings",
    "parse_smtp_url",
    "resolve_min_n",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str
    kind: type = str
    check: Callable[[str], object] | None = None  # raises SettingError on a value RelQ cannot use


@dataclass(frozen=True)
class SmtpServer:
    """Where RelQ sends mail, read from RELQ_SMTP_URL (the password never shows in a sentence)."""

    host: str
    port: int
    tls: bool  # smtps:// — TLS from the first byte
    starttls: bool  # smtp://…?starttls=true — upgrade a plain connection
    user: str | None
    password: str | None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp://[user:password@]host:port`` (``smtps://…`` for TLS; ``?starttls=true`` to upgrade a
    plain connection). User and password may be percent-encoded.

    >>> s = parse_smtp_url("smtps://relq%40example.com:p%3Ass@mail.example.com:465")
    >>> s.host, s.port, s.tls, s.user, s.password
    ('mail.example.com', 465, True, 'relq@example.com', 'p:ss')
    """
    expected = "expected smtp://[user:password@]host:port or smtps://… for TLS"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise SettingError(f"RELQ_SMTP_URL is not a mail server URL; {expected}.") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise SettingError(
            f"RELQ_SMTP_URL must start with smtp:// or smtps:// and name a host; {expected} "
            f"(got a value starting {url.strip()[:8]!r})."
        )
    query = {k.lower(): v.lower() for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)}
    unknown = set(query) - {"starttls"}
    if unknown:
        raise SettingError(
            f"RELQ_SMTP_URL: unknown option(s) {', '.join(sorted(unknown))}; only starttls=true."
        )
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if parts.scheme == "smtps" else 25),
        tls=parts.scheme == "smtps",
        starttls=query.get("starttls") in ("1", "true", "yes"),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _check_smtp_url(raw: str) -> None:
    if raw:
        parse_smtp_url(raw)


def _check_mail_from(raw: str) -> None:
    if "@" not in raw or any(c in raw for c in "\r\n"):
        raise SettingError(f"RELQ_MAIL_FROM={raw!r} is not an email address, e.g. relq@example.com.")


def _check_public_url(raw: str) -> None:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError(
            f"RELQ_PUBLIC_URL={raw!r} is not an http(s) address; expected the dashboard's address as "
            "people open it, e.g. https://relq.example.com."
        )


SETTINGS: dict[str, Setting] = {
    "database_url": Setting(
        "RELQ_DATABASE_URL",
        f"duckdb:///{PROJECT_ROOT / 'data' / 'relq.duckdb'}",
        "SQLAlchemy URL of the store; unset means the embedded DuckDB file data/relq.duckdb.",
    ),
    "min_n": Setting(
        "RELQ_MIN_N",
        "30",
        "Smallest n for a score to be shown in full and ranked; smaller ones are greyed.",
        int,
    ),
    "at_risk_days": Setting(
        "RELQ_AT_RISK_DAYS", "90", "An active customer with no purchase for this many days is at risk.", int
    ),
    "instrument_path": Setting(
        "RELQ_INSTRUMENT",
        str(PROJECT_ROOT / "data" / "instrument.toml"),
        "The questionnaire file: items, pillars, reverse keying and the answer scale.",
    ),
    "roles_path": Setting(
        "RELQ_ROLES",
        str(PROJECT_ROOT / "data" / "roles.toml"),
        "Maps sign-in emails or domains to executive, cx_lead, analyst or admin.",
    ),
    "demo_customers": Setting(
        "RELQ_DEMO_CUSTOMERS", "12000", "Customers in the demo company created on first start.", int
    ),
    "smtp_url": Setting(
        "RELQ_SMTP_URL",
        "",
        "Mail server for alerts and digests: smtp://[user:password@]host:port, smtps://… for TLS "
        "(?starttls=true upgrades a plain connection). Unset: mail waits in the outbox.",
        check=_check_smtp_url,
    ),
    "mail_from": Setting(
        "RELQ_MAIL_FROM",
        "relq@localhost",
        "The sender address of alerts and digests.",
        check=_check_mail_from,
    ),
    "public_url": Setting(
        "RELQ_PUBLIC_URL",
        "http://localhost:8501",
        "The dashboard's address as people open it; links in alerts and digests start with it.",
        check=_check_public_url,
    ),
    "delivery_timeout": Setting(
        "RELQ_DELIVERY_TIMEOUT",
        "10",
        "Seconds to wait for the mail server or a webhook before the delivery counts as failed "
        "(it stays queued and the next run retries it).",
        int,
    ),
}


@dataclass(frozen=True)
class Settings:
    database_url: str
    min_n: int = 30
    at_risk_days: int = 90
    instrument_path: str = field(default=str(PROJECT_ROOT / "data" / "instrument.toml"))
    roles_path: str = field(default=str(PROJECT_ROOT / "data" / "roles.toml"))
    demo_customers: int = 12000
    smtp_url: str = ""
    mail_from: str = "relq@localhost"
    public_url: str = "http://localhost:8501"
    delivery_timeout: int = 10

    @property
    def smtp(self) -> SmtpServer | None:
        """The mail server, or None when RELQ_SMTP_URL is unset."""
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read every setting from the environment, validating each one."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, setting in SETTINGS.items():
        raw = environ.get(setting.env) or setting.default
        if setting.kind is int:
            try:
                value = int(raw)
            except ValueError:
                raise SettingError(f"{setting.env}={raw!r} is not a whole number. {setting.help}") from None
            if value < 1:
                raise SettingError(f"{setting.env}={raw!r} must be at least 1. {setting.help}")
            values[name] = value
        else:
            values[name] = raw.strip()
        if setting.check is not None:
            setting.check(values[name])
    values["public_url"] = values["public_url"].rstrip("/")
    return Settings(**values)


def resolve_min_n(min_n: int | None = None) -> int:
    """``min_n`` when given, else the configured small-sample minimum (RELQ_MIN_N)."""
    return int(min_n) if min_n is not None else load_settings().min_n

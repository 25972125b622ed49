"""RelQ's settings, declared once with default and help text, read from the environment.

A wrong value stops start-up with a sentence saying what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from relq.exceptions import SettingError

__all__ = ["PROJECT_ROOT", "Setting", "SETTINGS", "Settings", "load_settings", "resolve_min_n"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setting:
    env: str
    default: str
    help: str
    kind: type = str


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
}


@dataclass(frozen=True)
class Settings:
    database_url: str
    min_n: int = 30
    at_risk_days: int = 90
    instrument_path: str = field(default=str(PROJECT_ROOT / "data" / "instrument.toml"))
    roles_path: str = field(default=str(PROJECT_ROOT / "data" / "roles.toml"))
    demo_customers: int = 12000


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
            values[name] = raw
    return Settings(**values)


def resolve_min_n(min_n: int | None = None) -> int:
    """``min_n`` when given, else the configured small-sample minimum (RELQ_MIN_N)."""
    return int(min_n) if min_n is not None else load_settings().min_n

"""Is this RelQ safe to serve? The sign-in cookie secret and the address the server listens on.

Pure Python: the frame (relq.ui.access) asks before it serves anything, and ``python -m relq check``
(run by scripts/run.sh before it starts the server) asks the same questions of the files on disk.

- With sign-in configured, the cookie secret signs every identity cookie: a secret anyone can read
  (the example's placeholder) or guess (a short one) lets anyone forge a sign-in, so RelQ refuses
  to start with it.
- Without sign-in (local single-user mode) whoever reaches the server is an admin, so the server
  must really listen on the loopback interface only — checked at run time, not assumed from the
  config file (started from another folder, that file may not have been read).
"""

from __future__ import annotations

import ipaddress
import socket
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from relq.core.settings import PROJECT_ROOT

__all__ = [
    "MIN_COOKIE_SECRET_BYTES",
    "SECRETS_FILE",
    "CONFIG_FILE",
    "placeholder_secrets",
    "cookie_secret_problem",
    "is_loopback",
    "local_mode_problem",
    "check_files",
]

MIN_COOKIE_SECRET_BYTES = 32
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"
CONFIG_FILE = PROJECT_ROOT / ".streamlit" / "config.toml"
_EXAMPLE_SECRETS = PROJECT_ROOT / ".streamlit" / "secrets.example.toml"
_KNOWN_PLACEHOLDERS = frozenset({"replace-with-a-long-random-string", "your-cookie-secret", "changeme"})


def placeholder_secrets() -> frozenset[str]:
    """Cookie secrets everyone knows: the example file's and common placeholders."""
    known = set(_KNOWN_PLACEHOLDERS)
    try:
        example = tomllib.loads(_EXAMPLE_SECRETS.read_text(encoding="utf-8"))
        known.add(str(example.get("auth", {}).get("cookie_secret", "")))
    except (OSError, tomllib.TOMLDecodeError):
        pass
    return frozenset(k for k in known if k)


def cookie_secret_problem(auth: Mapping | None) -> str | None:
    """The sentence saying why the ``[auth]`` cookie secret must not be used, or None when it is fine.

    >>> cookie_secret_problem({"cookie_secret": "replace-with-a-long-random-string"})[:60]
    'Sign-in is configured with the example cookie secret from .s'
    >>> cookie_secret_problem({"cookie_secret": "short"})[:48]
    'Sign-in is configured with a cookie secret of 5 '
    >>> cookie_secret_problem({"cookie_secret": "9f" * 32}) is None
    True
    """
    if not auth:
        return None
    secret = str(auth.get("cookie_secret") or "")
    how = (
        'replace it in .streamlit/secrets.toml with a long random string, e.g. from python -c "import '
        'secrets; print(secrets.token_hex(32))", and start RelQ again.'
    )
    if secret in placeholder_secrets():
        return (
            "Sign-in is configured with the example cookie secret from .streamlit/secrets.example.toml, "
            "which anyone can read and use to forge a sign-in, so RelQ does not start; " + how
        )
    size = len(secret.encode("utf-8"))
    if size < MIN_COOKIE_SECRET_BYTES:
        return (
            f"Sign-in is configured with a cookie secret of {size} bytes, shorter than the "
            f"{MIN_COOKIE_SECRET_BYTES} bytes needed to keep sign-ins from being forged, so RelQ does not "
            "start; " + how
        )
    return None


@lru_cache(maxsize=16)
def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this machine only.

    Empty or None means every interface (Streamlit's default). A host name counts only when every
    address it resolves to is a loopback address.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback(None)
    (True, True, False, False)
    """
    if not address:
        return False
    host = str(address).strip().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def local_mode_problem(address: str | None) -> str | None:
    """Why local single-user mode (no sign-in, everyone an admin) must not serve on ``address``.

    >>> local_mode_problem("localhost") is None
    True
    >>> local_mode_problem(None)[:69]
    'RelQ runs without sign-in (local single-user mode, everyone an admin)'
    """
    if is_loopback(address):
        return None
    where = f"on {address}" if address else "on every network interface"
    return (
        f"RelQ runs without sign-in (local single-user mode, everyone an admin) but the server listens "
        f"{where}, where other machines can reach it, so RelQ does not serve it; start it with "
        "bash scripts/run.sh (or streamlit run serve.py --server.address localhost), or configure sign-in "
        "([auth] in .streamlit/secrets.toml)."
    )


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def check_files(secrets_file: Path = SECRETS_FILE, config_file: Path = CONFIG_FILE) -> str | None:
    """The same checks on the files a start with scripts/run.sh reads (None when RelQ may start)."""
    try:
        auth = _toml(secrets_file).get("auth")
        address = _toml(config_file).get("server", {}).get("address")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return f"Cannot read RelQ's Streamlit settings ({exc}); fix the file and start again."
    if auth:
        return cookie_secret_problem(auth)
    return local_mode_problem(address)

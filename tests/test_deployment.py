"""RelQ refuses to serve when serving would be unsafe: a sign-in cookie secret anyone can forge
(the example's placeholder, or shorter than 32 bytes), or local single-user mode — everyone an
admin — on a server that does not listen on loopback only (checked at run time). In the page and
in ``python -m relq check``, which scripts/run.sh runs first; one sentence each time."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from relq.core import deployment

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = tomllib.loads((ROOT / ".streamlit" / "secrets.example.toml").read_text())["auth"]
GOOD_SECRET = "4b1d" * 16


@pytest.fixture
def admin_roles(tmp_path, monkeypatch):
    roles = tmp_path / "roles.toml"
    roles.write_text('[users]\n"root@example.com" = "admin"\n', encoding="utf-8")
    monkeypatch.setenv("RELQ_ROLES", str(roles))


def _signed_in_admin(cookie_secret: str, page: str | None = None) -> AppTest:
    """A session whose identity cookie says root@example.com (as a cookie forged with a known
    secret would): AppTest's user stands in for the cookie."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = {**EXAMPLE, "cookie_secret": cookie_secret}
    at.user = {"is_logged_in": True, "email": "root@example.com"}
    return at


@pytest.mark.parametrize(
    ("secret", "says"),
    [(EXAMPLE["cookie_secret"], "example cookie secret"), ("s3cret-but-short", "cookie secret of 16 bytes")],
)
def test_a_forgeable_cookie_secret_serves_nothing_not_even_to_an_admin_cookie(
    demo_env, admin_roles, secret, says
):
    at = _signed_in_admin(secret).run()
    assert not at.exception
    assert [e.value for e in at.error] and says in at.error[0].value and "does not start" in at.error[0].value
    assert not at.metric and not at.title and not at.sidebar.caption
    at.switch_page("pages/admin.py").run()  # the admin page by its URL: refused the same way
    assert not at.dataframe and any(says in e.value for e in at.error)


def test_a_long_random_cookie_secret_lets_the_admin_in(demo_env, admin_roles):
    at = _signed_in_admin(GOOD_SECRET).run()
    at.switch_page("pages/admin.py").run()
    assert not at.exception and not at.error
    assert at.dataframe


@pytest.fixture
def listening_on():
    """``listening_on(address)``: the server's real bind address, as Streamlit reports it."""
    before = st.get_option("server.address")
    yield lambda address: st.config.set_option("server.address", address)
    st.config.set_option("server.address", before)


@pytest.mark.parametrize("address", [None, "0.0.0.0", "192.0.2.10"])
def test_local_single_user_mode_refuses_a_server_reachable_from_other_machines(
    demo_env, listening_on, address
):
    listening_on(address)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert at.error and "local single-user mode" in at.error[0].value
    assert not at.metric and not at.title


def test_local_single_user_mode_on_loopback_says_where_it_listens(demo_env, listening_on):
    listening_on("127.0.0.1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception and at.metric
    assert any("listening on 127.0.0.1" in c.value for c in at.sidebar.caption)


def test_with_sign_in_any_address_is_fine(demo_env, admin_roles, listening_on):
    listening_on("0.0.0.0")
    at = _signed_in_admin(GOOD_SECRET).run()
    assert not at.exception and not at.error and at.metric


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True)]
    + [("0.0.0.0", False), ("", False), (None, False), ("::", False), ("10.0.0.1", False)],
)
def test_what_counts_as_loopback(address, loopback):
    assert deployment.is_loopback(address) is loopback


def _check(tmp_path, secrets: str | None, address: str | None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "relq", "check"]
    if secrets is not None:
        (tmp_path / "secrets.toml").write_text(secrets, encoding="utf-8")
        args += ["--secrets", str(tmp_path / "secrets.toml")]
    else:
        args += ["--secrets", str(tmp_path / "absent.toml")]
    config = "[server]\n" + (f'address = "{address}"\n' if address else "")
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    args += ["--config", str(tmp_path / "config.toml")]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=os.environ, timeout=60)


@pytest.mark.parametrize(
    ("secrets", "address", "says"),
    [
        ((ROOT / ".streamlit" / "secrets.example.toml").read_text(), "localhost", "example cookie secret"),
        ('[auth]\ncookie_secret = "short"\n', "localhost", "cookie secret of 5 bytes"),
        (None, "0.0.0.0", "listens on 0.0.0.0"),
        (None, None, "every network interface"),
    ],
)
def test_the_start_script_check_refuses_in_one_sentence(tmp_path, secrets, address, says):
    run = _check(tmp_path, secrets, address)
    assert run.returncode == 2, run.stdout
    assert says in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_the_start_script_check_passes_a_safe_setup(tmp_path):
    assert _check(tmp_path, None, "localhost").returncode == 0
    assert _check(tmp_path, f'[auth]\ncookie_secret = "{GOOD_SECRET}"\n', "0.0.0.0").returncode == 0
    assert "relq check" in (ROOT / "scripts" / "run.sh").read_text()

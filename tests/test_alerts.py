"""Alerts with real components on loopback: an aiosmtpd mail server and an HTTP webhook receiving
what fired; the numbers checked against statsmodels; faults (an unreachable mail server, a refused
login, a webhook that times out, a rule on a dimension that no longer exists) give a sentence and a
non-zero exit, lose nothing, are retried by the next run and never send twice."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import statsmodels.api as sm
from loop_data import free_port, import_customers, import_survey, index_of
from scipy import stats as sp_stats
from smtp_server import Hook, MailBox, text_of

from relq import store
from relq.analyses import alerts
from relq.cli import main
from relq.core import auth
from relq.core.settings import load_settings
from relq.exceptions import RelqError, SettingError
from relq.outputs.alerting import run_alerts
from relq.store import schema


@pytest.fixture(params=["duckdb", "postgres"])
def engine(request):
    """Cases and alerts live on DuckDB and PostgreSQL (ClickHouse holds no row-by-row state):
    the same test on both."""
    return request.getfixturevalue(f"{request.param}_engine")


ROLES = """
[users]
"lead@example.com" = "cx_lead"
"cfo@example.com" = "executive"
"emea.lead@example.com" = "cx_lead"
[scopes]
"emea.lead@example.com" = { region = "EMEA" }
"""
CUSTOMERS = [
    {"customer_id": f"C{i:02d}", "region": "EMEA" if i % 2 else "APAC", "company": f"Secretco {i}"}
    for i in range(12)
]


@pytest.fixture
def roles(tmp_path, monkeypatch):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES, encoding="utf-8")
    monkeypatch.setenv("RELQ_ROLES", str(path))
    return auth.load_roles(path)


@pytest.fixture
def mailbox():
    box = MailBox().start()
    yield box
    box.stop()


@pytest.fixture
def hook():
    receiver = Hook().start()
    yield receiver
    receiver.stop()


def _settings(smtp_port: int | None, **extra):
    env = {"RELQ_MIN_N": "5", "RELQ_PUBLIC_URL": "https://relq.example.com", **extra}
    if smtp_port:
        env["RELQ_SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
    return load_settings(env)


def _wave(day: str, level: int, prefix: str, customers=CUSTOMERS) -> list[dict]:
    return [
        {
            "response_id": f"{prefix}-{c['customer_id']}",
            "customer_id": c["customer_id"],
            "submitted_at": f"{day} 10:00",
            "nps": 8,
            "satisfaction": level,
        }
        for c in customers
    ]


# --------------------------------------------------------------------------- the numbers


def _responses(seed: int) -> pd.DataFrame:
    """Customers answering 0–3 times in each of two 30-day windows, satisfaction and NPS varying."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(30):
        base = rng.integers(2, 7)
        for window, day in (("previous", "2026-04-10"), ("current", "2026-05-20")):
            for k in range(rng.integers(0 if c % 5 else 1, 4)):
                rows.append(
                    {
                        "response_id": f"R{c}-{window}-{k}",
                        "customer_id": f"C{c:02d}",
                        "submitted_at": f"{day} {10 + k}:00",
                        "nps": int(rng.integers(0, 11)),
                        "satisfaction": int(
                            np.clip(base + rng.integers(-1, 2) + (window == "current"), 1, 7)
                        ),
                        "window": window,
                    }
                )
    return pd.DataFrame(rows)


def _cluster_se(y: np.ndarray, x: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """statsmodels OLS with cluster-robust (sandwich) SE and no small-sample factor; RelQ's
    clustered variance is this times C/(C−1) (Methodology page)."""
    fit = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
    c = len(np.unique(groups))
    return float(fit.params[-1]), float(fit.bse[-1]) * math.sqrt(c / (c - 1))


@pytest.mark.parametrize("metric", ["satisfaction", "nps"])
def test_alert_numbers_match_statsmodels_cluster_robust_ols(engine, metric):
    frame = _responses(seed=3)
    import_customers(engine, [{"customer_id": f"C{c:02d}"} for c in range(30)])
    import_survey(engine, frame.drop(columns="window").to_dict("records"))
    rule = alerts.AlertRule("test", metric, "changes", window_days=30, recipients=("lead@example.com",))
    with engine.connect() as conn:
        result = alerts.evaluate_rule(conn, rule, min_n=5, end=date(2026, 5, 20))
    if metric == "nps":
        y = np.where(frame["nps"] >= 9, 100.0, np.where(frame["nps"] <= 6, -100.0, 0.0))
    else:
        y = frame["satisfaction"].map(index_of).to_numpy()
    now = (frame["window"] == "current").to_numpy()
    groups = frame["customer_id"].to_numpy()
    # the current window's mean and its clustered interval (a t interval on C − 1 df for a mean)
    mean, se = _cluster_se(y[now], np.ones((now.sum(), 1)), groups[now])
    customers = len(np.unique(groups[now]))
    assert result.estimate == pytest.approx(mean)
    if metric == "satisfaction":
        half = sp_stats.t.ppf(0.975, customers - 1) * se
        assert (result.low, result.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    # the change: OLS on a current-window dummy over both windows, clustered by customer
    delta, se_delta = _cluster_se(y, sm.add_constant(now.astype(float)), groups)
    assert result.delta == pytest.approx(delta)
    assert (result.delta_low, result.delta_high) == (
        pytest.approx(delta - 1.959963984540054 * se_delta),
        pytest.approx(delta + 1.959963984540054 * se_delta),
    )
    assert result.p_value == pytest.approx(2 * sp_stats.norm.sf(abs(delta / se_delta)))
    assert result.n == int(now.sum()) and result.customers == customers


def test_small_windows_never_fire_and_say_why(engine):
    import_customers(engine, CUSTOMERS[:3])
    import_survey(engine, _wave("2026-05-01", 2, "A", CUSTOMERS[:3]))
    rule = alerts.AlertRule("few", "satisfaction", "below", threshold=60, recipients=("lead@example.com",))
    with engine.connect() as conn:
        result = alerts.evaluate_rule(conn, rule, min_n=2)
    assert (
        result.holds is None and "too few to alert on" in result.message and "5 customers" in result.message
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"name": " "}, "Give the alert rule a name"),
        ({"condition": "below", "threshold": None}, "needs a number between 0 and 100"),
        ({"metric": "nps", "condition": "above", "threshold": 140}, "between -100 and 100"),
        ({"recipients": ("not-an-address",)}, "neither an email address nor a webhook URL"),
        ({"recipients": ()}, "at least one recipient"),
        ({"dimension": "shoe_size", "value": "42"}, "not a segment dimension"),
        ({"window_days": 3}, "7 to 366 days"),
    ],
)
def test_a_bad_alert_rule_gets_a_sentence(duckdb_engine, change, says):
    rule = alerts.AlertRule("ok", "satisfaction", "falls", recipients=("lead@example.com",))
    with pytest.raises(RelqError, match=says):
        alerts.save_rule(duckdb_engine, alerts.AlertRule(**{**rule.__dict__, **change}), "ana")


def test_a_wrong_mail_setting_stops_start_up_with_what_was_expected():
    with pytest.raises(SettingError, match="must start with smtp:// or smtps://"):
        load_settings({"RELQ_SMTP_URL": "mail.example.com:25"})
    with pytest.raises(SettingError, match="RELQ_MAIL_FROM='relq' is not an email address"):
        load_settings({"RELQ_MAIL_FROM": "relq"})
    with pytest.raises(SettingError, match="RELQ_PUBLIC_URL"):
        load_settings({"RELQ_PUBLIC_URL": "relq.example.com"})


# --------------------------------------------------------------------------- firing and delivery


def test_an_alert_fires_once_per_change_by_email_and_webhook_with_number_interval_and_link(
    engine, roles, mailbox, hook
):
    settings = _settings(mailbox.port)
    import_customers(engine, CUSTOMERS)
    import_survey(engine, _wave("2026-03-01", 3, "A"))  # satisfaction 33.3 for everyone
    recipients = ("lead@example.com", hook.url, "stranger@example.org", "emea.lead@example.com")
    alerts.save_rule(
        engine,
        alerts.AlertRule(
            "Satisfaction below 60", "satisfaction", "below", 60.0, window_days=30, recipients=recipients
        ),
        "ana@example.com",
    )
    run = run_alerts(engine, user="cli:test", settings=settings, roles=roles)
    assert run.ok and len(run.fired) == 1
    assert any("stranger@example.org has no role" in s for s in run.skipped)
    assert any("emea.lead@example.com sees only region: EMEA" in s for s in run.skipped)
    assert [rcpt for rcpt, _ in mailbox.messages] == [["lead@example.com"]]
    message = mailbox.messages[0][1]
    body = text_of(message)
    assert "33.3" in message["Subject"]
    assert "95% CI" in body and "n = 12 responses from 12 customers" in body
    assert "https://relq.example.com/overview?since=2026-01-31&until=2026-03-01" in body
    assert not any(c["company"] in body or c["customer_id"] in body for c in CUSTOMERS)  # aggregates only
    ((headers, payload),) = hook.received
    assert "33.3" in payload["text"] and "95% CI" in payload["text"]
    assert "|Open the filtered view in RelQ>" in payload["text"] and payload["blocks"]
    assert headers["x-relq-delivery"].isdigit()
    # the same state again: nothing new is sent
    assert not run_alerts(engine, user="cli:test", settings=settings, roles=roles).fired
    # recovered (a month later satisfaction is 83): clear, nothing sent
    import_survey(engine, _wave("2026-04-15", 6, "B"))
    again = run_alerts(engine, user="cli:test", settings=settings, roles=roles)
    assert not again.fired and again.evaluations[0].status == "not met"
    # and down again: a new change, a new alert
    import_survey(engine, _wave("2026-06-01", 2, "C"))
    third = run_alerts(engine, user="cli:test", settings=settings, roles=roles)
    assert len(third.fired) == 1
    assert len(mailbox.to("lead@example.com")) == 2 and len(hook.received) == 2
    log = store.audit_log(engine)
    assert (log["action"] == "alert").sum() == 2 and (log["action"] == "send").sum() == 4


def test_an_unreachable_mail_server_fails_in_one_line_keeps_the_message_and_sends_it_once_later(
    duckdb_engine, roles, monkeypatch, capsys
):
    engine = duckdb_engine
    port = free_port()  # nothing listens here yet
    url = str(engine.url)
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    monkeypatch.setenv("RELQ_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("RELQ_MIN_N", "5")
    import_customers(engine, CUSTOMERS)
    import_survey(engine, _wave("2026-03-01", 3, "A"))
    alerts.save_rule(
        engine,
        alerts.AlertRule(
            "low", "satisfaction", "below", 60.0, window_days=30, recipients=("lead@example.com",)
        ),
        "ana",
    )
    assert main(["alerts", "run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"Cannot reach the mail server at 127.0.0.1:{port}" in err[0]
    assert "stays queued for the next run" in err[0]
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(schema.outbox)).all()
    assert (row.state, row.attempts) == ("pending", 1) and "Cannot reach" in row.last_error
    box = MailBox(port=port).start()
    try:
        assert main(["alerts", "run"]) == 0  # the next run delivers it…
        assert main(["alerts", "run"]) == 0  # …and the one after sends nothing again
        assert len(box.messages) == 1
    finally:
        box.stop()
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(schema.outbox)).all()
    assert (row.state, row.attempts) == ("sent", 2)
    assert (store.audit_log(engine)["action"] == "send").sum() == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_refused_login_gets_a_sentence_without_the_password(duckdb_engine, roles):
    box = MailBox(login=("relq", "right-password")).start()
    try:
        settings = load_settings(
            {"RELQ_MIN_N": "5", "RELQ_SMTP_URL": f"smtp://relq:wrong%20secret@127.0.0.1:{box.port}"}
        )
        import_customers(duckdb_engine, CUSTOMERS)
        import_survey(duckdb_engine, _wave("2026-03-01", 3, "A"))
        alerts.save_rule(
            duckdb_engine,
            alerts.AlertRule(
                "low", "satisfaction", "below", 60.0, window_days=30, recipients=("lead@example.com",)
            ),
            "ana",
        )
        run = run_alerts(duckdb_engine, user="t", settings=settings, roles=roles)
        assert not run.ok and "refused the login for 'relq'" in run.problem()
        assert "wrong secret" not in run.problem() and "wrong%20secret" not in run.problem()
        assert not box.messages
        fixed = load_settings(
            {"RELQ_MIN_N": "5", "RELQ_SMTP_URL": f"smtp://relq:right-password@127.0.0.1:{box.port}"}
        )
        assert run_alerts(duckdb_engine, user="t", settings=fixed, roles=roles).ok
        assert len(box.messages) == 1
    finally:
        box.stop()


def test_a_webhook_that_times_out_stays_queued_and_is_delivered_once_when_it_answers(
    duckdb_engine, roles, hook
):
    settings = _settings(None, RELQ_DELIVERY_TIMEOUT="1")
    import_customers(duckdb_engine, CUSTOMERS)
    import_survey(duckdb_engine, _wave("2026-03-01", 3, "A"))
    alerts.save_rule(
        duckdb_engine,
        alerts.AlertRule("low", "satisfaction", "below", 60.0, window_days=30, recipients=(hook.url,)),
        "ana",
    )
    hook.slow = 3.0
    run = run_alerts(duckdb_engine, user="t", settings=settings, roles=roles)
    assert not run.ok and "did not answer within 1 s" in run.problem()
    assert (
        "s3cr3tPath" not in run.problem()
        and f"127.0.0.1:{hook.url.split(':')[2].split('/')[0]}/…" in run.problem()
    )
    hook.slow = 0.0
    assert run_alerts(duckdb_engine, user="t", settings=settings, roles=roles).ok
    assert run_alerts(duckdb_engine, user="t", settings=settings, roles=roles).ok
    assert len(hook.received) == 1
    # the attempt that timed out and the one that went through carry the same delivery id
    assert {h["x-relq-delivery"] for h in hook.too_late} == {hook.received[0][0]["x-relq-delivery"]}


def test_a_rule_on_a_dimension_that_no_longer_exists_is_one_line_and_a_non_zero_exit(
    duckdb_engine, monkeypatch, capsys, roles
):
    engine = duckdb_engine
    monkeypatch.setenv("RELQ_DATABASE_URL", str(engine.url))
    monkeypatch.setenv("RELQ_MIN_N", "5")
    first = import_customers(engine, CUSTOMERS)
    tiers = "customer_id,company,tier\n" + "\n".join(f"D{i},Gold {i},Gold" for i in range(6)) + "\n"
    from relq.ingest import import_file

    tier_import = import_file(
        engine,
        tiers.encode(),
        file_name="tiers.csv",
        kind="customers",
        mapping={
            "kind": "customers",
            "columns": {"customer_id": "customer_id", "company": "company", "tier": "extra:tier"},
        },
    )
    import_survey(engine, _wave("2026-03-01", 3, "A"))
    alerts.save_rule(
        engine,
        alerts.AlertRule(
            "Gold",
            "satisfaction",
            "below",
            60.0,
            dimension="tier",
            value="Gold",
            window_days=30,
            recipients=("lead@example.com",),
        ),
        "ana",
    )
    assert tier_import.rows_imported == 6
    store.undo_import(engine, tier_import.import_id)  # the field is gone from the data
    assert first.import_id != tier_import.import_id
    assert main(["alerts", "run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "watches the dimension “tier”, which no longer exists" in err[0]
    with engine.connect() as conn:
        table = alerts.rules_table(conn)
    assert table["last status"].tolist() == ["error"]


def test_alert_windows_end_on_the_latest_survey_day():
    rule = alerts.AlertRule("x", "nps", "falls", window_days=90)
    assert rule.describe() == "NPS (all customers) falls significantly vs the previous 90 days"
    end = date(2026, 8, 28)
    assert end - timedelta(days=rule.window_days - 1) == date(2026, 5, 31)

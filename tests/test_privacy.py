"""Executives never see a person: no view, group, period, bar or download about fewer than 5
customers (whatever the filters or the URL), no comment word for word, no staff names unless an
admin allows them — and every export and import is in the audit log, in the same transaction.

Roles are driven through the frame with AppTest (``user`` stands in for ``st.user``); the numbers a
page may show are checked against counts taken independently from the stored rows with pandas.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import small_groups, voice
from relq.core import auth
from relq.core.redact import NameMasker, mask_text
from relq.exceptions import ImportRejected
from relq.ingest import import_file
from relq.store import privacy
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a-test-cookie-secret-long-enough-to-sign-with",
    "client_id": "relq-test",
    "client_secret": "relq-test",
    "server_metadata_url": "https://login.example.com/.well-known/openid-configuration",
}
ROLES = '[users]\n"boss@example.com" = "executive"\n"lead@example.com" = "cx_lead"\n"root@example.com" = "admin"\n'
ITEMS = (
    "trust_1,trust_2,trust_3,trust_4,commitment_1,commitment_2,commitment_3,commitment_4,"
    "satisfaction_1,satisfaction_2,satisfaction_3"
)
SENTENCE = "cover fewer than 5 customers"


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def small_groups_url(tmp_path_factory, demo_company):
    """The demo company plus a one-customer region (Atlantis) and a one-customer account owner,
    each with a survey answer and purchases, and a comment naming a person."""
    path = tmp_path_factory.mktemp("privacy") / "relq.duckdb"
    engine = store.get_engine(f"duckdb:///{path}")
    store.load_demo(engine, demo_company)
    import_file(
        engine,
        _csv(
            "customer_id,name,email,region,industry,plan,owner,acquired_at,annual_value",
            "X1,Jane Doe,jane.doe@solo.example,Atlantis,Retail,Pro,Olga Solo,2024-03-01,90000",
            "X2,Bo Lone,bo@lone.example,EMEA,Retail,Pro,Olga Solo,2024-03-01,80000",
        ),
        file_name="customers.csv",
    )
    import_file(
        engine,
        _csv(
            "transaction_id,customer_id,occurred_at,amount",
            "XT1,X1,2024-04-01,1000",
            "XT2,X1,2026-05-01,2000",
            "XT3,X2,2026-06-01,3000",
        ),
        file_name="transactions.csv",
    )
    import_file(
        engine,
        _csv(
            f"response_id,customer_id,submitted_at,nps,csat,ces,{ITEMS},comment",
            f"XR1,X1,2026-07-15 10:00,2,1,7,{','.join(['2'] * 11)},"
            "Please call Jane Doe at jane.doe@solo.example or +44 20 7946 0958 about the zorblax invoice",
            f"XR2,X2,2026-07-16 10:00,3,2,6,{','.join(['3'] * 11)},zorblax zorblax again",
        ),
        file_name="survey.csv",
    )
    engine.dispose()
    return f"duckdb:///{path}"


@pytest.fixture
def as_role(small_groups_url, tmp_path, monkeypatch):
    """``as_role(role, query_params)``: AppTest of the frame signed in with that role."""
    roles = tmp_path / "roles.toml"
    roles.write_text(ROLES, encoding="utf-8")
    monkeypatch.setenv("RELQ_ROLES", str(roles))
    monkeypatch.setenv("RELQ_DATABASE_URL", small_groups_url)
    emails = {"executive": "boss@example.com", "cx_lead": "lead@example.com", "admin": "root@example.com"}

    def make(role: str, query: dict | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        at.secrets["auth"] = dict(SECRETS)
        at.user = {"is_logged_in": True, "email": emails[role]}
        at.query_params.update(query or {})
        return at

    return make


@pytest.fixture
def owner_splits(small_groups_url):
    """``owner_splits(allowed)``: what the admin set on the Admin page; back to the default after."""
    engine = store.get_engine(small_groups_url)
    yield lambda allowed: store.set_setting(engine, auth.OWNER_SPLITS_SETTING, allowed, "root@example.com")
    store.set_setting(engine, auth.OWNER_SPLITS_SETTING, False, "root@example.com")
    engine.dispose()


def _shows_nothing_but_the_sentence(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert any(SENTENCE in w.value for w in at.warning)
    assert not at.metric and not at.dataframe and not at.get("plotly_chart")
    assert not at.get("download_button")


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


# ── 1. groups under 5 customers ─────────────────────────────────────────────────────────────


def test_a_url_filter_selecting_one_customer_shows_an_executive_one_sentence(as_role, downloads):
    at = as_role("executive", {"seg.region": "Atlantis"}).run()
    _shows_nothing_but_the_sentence(at)
    assert "relq-board-report" not in " ".join(downloads.pending)  # no board report of one customer

    lead = as_role("cx_lead", {"seg.region": "Atlantis"}).run()  # other roles see the customer
    assert not lead.exception and lead.metric


def test_segment_explorer_by_owner_hides_a_one_customer_owner_from_chart_table_and_downloads(
    as_role, owner_splits, downloads
):
    owner_splits(True)
    at = as_role("executive").run()
    at.switch_page("pages/segments.py").run()
    at.selectbox(key="seg_first").select("owner").run()
    assert not at.exception
    bars = [y for fig in _charts(at) for trace in fig["data"] for y in trace.get("y", [])]  # horizontal
    assert bars and "Olga Solo" not in bars
    assert all("Olga Solo" not in set(d.value.get("segment", [])) for d in at.dataframe)
    tidy = pd.read_csv(io.BytesIO(downloads["segments-owner-tidy.csv"]), encoding="utf-8-sig")
    wide = pd.read_csv(io.BytesIO(downloads["segments-owner.csv"]), encoding="utf-8-sig")
    assert "Olga Solo" not in set(tidy["segment"]) and "Olga Solo" not in set(wide["segment"])
    assert tidy["customers"].min() >= 5 and wide["customers"].min() >= 5


def test_lifetime_value_by_owner_has_no_one_customer_row_for_executives(as_role, owner_splits, downloads):
    owner_splits(True)
    at = as_role("executive").run()
    at.session_state["ret_tab"] = "Lifetime value"  # only the open tab computes
    at.switch_page("pages/retention.py").run()
    at.selectbox(key="ret_clv_by").select("owner").run()
    assert not at.exception
    clv = pd.read_csv(io.BytesIO(downloads["lifetime_value.csv"]), encoding="utf-8-sig")
    assert "Olga Solo" not in set(clv["segment"]) and clv["customers"].min() >= 5

    lead = as_role("cx_lead").run()
    lead.session_state["ret_tab"] = "Lifetime value"
    lead.switch_page("pages/retention.py").run()
    lead.selectbox(key="ret_clv_by").select("owner").run()
    assert any("Olga Solo" in set(d.value.get("segment", [])) for d in lead.dataframe)


def test_the_board_report_for_executives_leaves_out_periods_and_segments_under_five(small_groups_url):
    engine = store.get_engine(small_groups_url)
    flt = SegmentFilter(customer=(("plan", ("Enterprise",)), ("region", ("LATAM",))))
    with engine.connect() as conn:
        counts = privacy.respondents_by_period(conn, flt)
        small = counts[counts["customers"] < 5]
        assert privacy.view_size(conn, flt).respondents >= 5 and not small.empty  # a few answer a month
        full = store_report(conn, flt, 0)
        safe = store_report(conn, flt, 5)
    engine.dispose()
    for period in small["period"]:
        label = pd.Timestamp(period).strftime("%Y-%m-%d")
        assert label in full and label not in safe


def store_report(conn, flt, minimum: int) -> str:
    from datetime import datetime

    from relq.outputs import board_report

    return board_report.board_report_html(conn, flt, datetime(2026, 9, 1), minimum)


def test_kpis_of_a_small_period_are_withheld_and_deltas_against_one_are_blanked():
    kpis = pd.DataFrame(
        {
            "metric": ["rq", "nps", "retention", "churn"],
            "n": [50, 48, 120, 4],
            "previous_n": [40, 40, 3, 100],
            "previous": [60.0, 10.0, 90.0, 5.0],
            "delta": [1.0, 2.0, 3.0, 4.0],
            "delta_low": [0.0] * 4,
            "delta_high": [2.0] * 4,
            "p_value": [0.5] * 4,
            "significant": [True] * 4,
        }
    )
    shown = small_groups.withhold_kpis(kpis, current=50, previous=4)
    assert shown["metric"].tolist() == ["rq", "nps", "retention"]  # churn: 4 customers at the start
    assert shown["delta"].isna().all() and not shown["significant"].any()
    assert small_groups.withhold_kpis(kpis, current=4, previous=40)["metric"].tolist() == ["retention"]


def test_segment_moves_and_survival_curves_of_small_groups_are_withheld():
    moves = pd.DataFrame(
        {"dimension": ["region", "region", "plan"], "value": ["EU", "US", "Pro"], "delta": [1, 2, 3]}
    )
    now = pd.DataFrame(
        {"dimension": ["region", "region", "plan"], "segment": ["EU", "US", "Pro"], "customers": [9, 9, 9]}
    )
    before = now.assign(customers=[9, 4, 9])  # US had 4 respondents before: its move rests on them
    assert small_groups.withhold_moves(moves, now, before)["value"].tolist() == ["EU", "Pro"]

    from relq.analyses.survival import KaplanMeier

    km = KaplanMeier(
        curves=pd.DataFrame({"segment": ["A", "A", "B"], "months": [0, 1, 0], "survival": [1, 0.9, 1]}),
        summary=pd.DataFrame({"segment": ["A", "B"], "customers": [50, 3]}),
        horizon_months=12.0,
        pairwise=pd.DataFrame({"a": ["A"], "b": ["B"], "p": [0.5]}),
    )
    shown = small_groups.withhold_survival(km)
    assert set(shown.curves["segment"]) == {"A"} and shown.summary["segment"].tolist() == ["A"]
    assert shown.pairwise.empty


# ── the property: any filter combination, from a URL ────────────────────────────────────────


@pytest.fixture(scope="module")
def truth(small_groups_url):
    """The stored rows, read with pandas, to count respondents independently of RelQ's SQL."""
    engine = store.get_engine(small_groups_url)
    with engine.connect() as conn:
        responses = pd.read_sql(
            "SELECT response_id, customer_id, submitted_at, trust, satisfaction FROM survey_responses", conn
        )
        customers = pd.read_sql("SELECT customer_id, region, plan, industry, owner FROM customers", conn)
    engine.dispose()
    return responses, customers


def _in_view(truth, query: dict, drop: str | None = None) -> pd.DataFrame:
    """Responses in the view a URL asks for (as the sidebar applies it: owner is no filter)."""
    responses, customers = truth
    chosen = customers
    for dim in ("region", "plan", "industry"):
        if f"seg.{dim}" in query and dim != drop:
            chosen = chosen[chosen[dim].isin(query[f"seg.{dim}"].split("|"))]
    period = responses
    if "since" in query:
        since, until = sorted((date.fromisoformat(query["since"]), date.fromisoformat(query["until"])))
        period = responses[
            (responses["submitted_at"] >= pd.Timestamp(since))
            & (responses["submitted_at"] < pd.Timestamp(until + timedelta(days=1)))
        ]
    if "quadrant" in query:
        both = period.dropna(subset=["trust", "satisfaction"]).sort_values(["submitted_at", "response_id"])
        latest = both.groupby("customer_id").tail(1)
        key = (
            "x_"
            + latest["trust"].ge(50).map({True: "high", False: "low"})
            + "_y_"
            + latest["satisfaction"].ge(50).map({True: "high", False: "low"})
        )
        chosen = chosen[chosen["customer_id"].isin(latest.loc[key == query["quadrant"], "customer_id"])]
    filtered = any(f"seg.{d}" in query and d != drop for d in ("region", "plan", "industry")) or (
        "quadrant" in query
    )
    if filtered:
        period = period[period["customer_id"].isin(chosen["customer_id"])]
    return period.merge(customers, on="customer_id", how="left")


def _respondents(frame: pd.DataFrame) -> int:
    return frame["customer_id"].fillna("r:" + frame["response_id"]).nunique()


QUERIES = st.tuples(
    st.fixed_dictionaries(
        {},
        optional={
            "seg.region": st.sampled_from(["Atlantis", "EMEA", "LATAM", "APAC|Atlantis"]),
            "seg.plan": st.sampled_from(["Enterprise", "Pro", "Starter|Growth"]),
            "seg.industry": st.sampled_from(["Retail", "Healthcare", "Logistics"]),
            "seg.owner": st.sampled_from(["Olga Solo"]),
            "quadrant": st.sampled_from(["x_high_y_low", "x_low_y_high", "x_low_y_low"]),
            "since": st.dates(date(2024, 1, 1), date(2026, 8, 31)).map(date.isoformat),
        },
    ),
    st.integers(0, 150),
).map(
    lambda q_days: (
        {
            **q_days[0],
            "until": (date.fromisoformat(q_days[0]["since"]) + timedelta(days=q_days[1])).isoformat(),
        }
        if "since" in q_days[0]
        else q_days[0]
    )
)


@settings(max_examples=20, suppress_health_check=list(HealthCheck))
@given(query=QUERIES)
def test_no_number_reaching_an_executive_rests_on_fewer_than_five_customers(as_role, truth, query):
    """For any filters from a URL, an executive's Overview and Segment explorer show either the one
    sentence, or only periods, bars, rows and downloads about at least 5 customers."""
    view = _in_view(truth, query)
    at = as_role("executive", query).run()
    if _respondents(view) == 0:  # no survey number at all: "nothing matches" or the sentence
        assert not at.exception and at.warning and not at.metric and not at.get("plotly_chart")
        return
    if _respondents(view) < 5:
        _shows_nothing_but_the_sentence(at)
        return
    assert not at.exception, [e.value for e in at.exception]
    months = view["submitted_at"].dt.to_period("M")
    per_month = view.assign(month=months).groupby("month").apply(_respondents, include_groups=False)
    for fig in _charts(at):
        for trace in fig["data"]:
            if fig["layout"]["title"]["text"].endswith("by month"):
                for x in trace.get("x", []):
                    assert per_month.get(pd.Period(str(x)[:7], "M"), 0) >= 5, (query, x)
    for frame in at.dataframe:
        if "customers" in frame.value.columns:
            assert frame.value["customers"].min() >= 5, query

    at.switch_page("pages/segments.py").run()  # by region, the first dimension
    assert not at.exception, [e.value for e in at.exception]
    if any(SENTENCE in w.value for w in at.warning):
        return
    by_region = _in_view(truth, query, drop="region")
    for fig in _charts(at):
        for trace in fig["data"]:
            for segment in trace.get("y", []):  # horizontal bars, one per segment
                assert _respondents(by_region[by_region["region"] == segment]) >= 5, (query, segment)
    for frame in at.dataframe:
        if "customers" in frame.value.columns:
            assert frame.value["customers"].min() >= 5, query


# ── 2. comments: aggregates only for executives, personal data masked ──────────────────────


def test_executives_get_comment_aggregates_and_never_a_comment_or_its_ids(as_role, downloads):
    at = as_role("executive").run()
    at.switch_page("pages/voice.py").run()
    assert not at.exception
    assert at.metric  # counts and sentiment mix
    assert not any("comment" in d.value.columns for d in at.dataframe)
    assert "comments.csv" not in downloads
    assert any("word for word" in i.value for i in at.info)

    lead = as_role("cx_lead").run()
    lead.switch_page("pages/voice.py").run()
    assert any("comment" in d.value.columns for d in lead.dataframe)


def test_executive_terms_are_masked_and_used_by_at_least_five_customers(small_groups_url):
    engine = store.get_engine(small_groups_url)
    with engine.connect() as conn:
        private = voice.group_terms(conn, SegmentFilter(), "detractor", private=True, top=200)
        public = voice.group_terms(conn, SegmentFilter(), "detractor", top=5000)
    engine.dispose()
    assert "zorblax" in set(public["term"])  # two customers' word: fine for a CX lead
    assert "zorblax" not in set(private["term"]) and private["customers"].min() >= 5
    assert not {"jane", "doe", "jane doe"} & set(private["term"])


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Please call Jane Doe at jane.doe@acme.example", "Please call [name] at [email]"),
        ("ring +44 20 7946 0958 or (030) 123-4567", "ring [phone] or [phone]"),
        ("JANE DOE was rude; Doe never called", "[name] was rude; [name] never called"),
        ("renewal on 2026-05-01, invoice 42", "renewal on 2026-05-01, invoice 42"),
        ("Olga Solo fixed it", "[name] fixed it"),
    ],
)
def test_personal_data_inside_comment_text_is_masked(text, masked):
    assert mask_text(text, ["Jane Doe", "Olga Solo", "Acme"]) == masked


def test_comments_are_masked_for_roles_that_may_not_see_personal_data_only():
    frame = pd.DataFrame({"customer_id": ["C1"], "email": ["x@y.example"], "comment": ["Mail x@y.example"]})
    masker = NameMasker(["Jane Doe"])
    assert auth.mask_personal(frame, "executive", masker).to_dict("records") == [
        {"customer_id": "C1", "comment": "Mail [email]"}
    ]
    pd.testing.assert_frame_equal(auth.mask_personal(frame, "cx_lead", masker), frame)


# ── 3. staff names ───────────────────────────────────────────────────────────────────────────


def test_executives_get_no_owner_dimension_unless_an_admin_allows_it(as_role, owner_splits):
    at = as_role("executive").run()
    at.switch_page("pages/segments.py").run()
    assert "Owner" not in at.selectbox(key="seg_first").options
    at.session_state["ret_tab"] = "Lifetime value"  # only the open tab computes
    at.switch_page("pages/retention.py").run()
    assert "Owner" not in at.selectbox(key="ret_clv_by").options
    at.switch_page("pages/drivers.py").run()
    assert "owner" not in at.selectbox(key="drivers_dimension").options

    owner_splits(True)
    at = as_role("executive").run()
    at.switch_page("pages/segments.py").run()
    assert "Owner" in at.selectbox(key="seg_first").options


def test_the_admin_switches_owner_splits_on_the_admin_page_with_an_audit_row(as_role, small_groups_url):
    engine = store.get_engine(small_groups_url)
    assert store.get_setting(engine, auth.OWNER_SPLITS_SETTING, False) is False
    at = as_role("admin").run()
    at.switch_page("pages/admin.py").run()
    at.toggle(key="admin_owner_splits").set_value(True).run()
    assert not at.exception
    assert store.get_setting(engine, auth.OWNER_SPLITS_SETTING, False) is True
    log = store.audit_log(engine)
    assert (log["action"] == "setting").any()
    store.set_setting(engine, auth.OWNER_SPLITS_SETTING, False, "root@example.com")
    engine.dispose()


# ── 4. every export and import audited, in the same transaction ─────────────────────────────


def test_no_page_offers_a_download_outside_the_audited_path():
    """A download button drawn with its bytes puts the file on the server before anyone clicks;
    pages use ui.download_csv / ui.audited_download, which make the file and its audit row at once."""
    offenders = [
        p.name for p in sorted((ROOT / "pages").glob("*.py")) if "st.download_button" in p.read_text()
    ]
    assert not offenders


def test_a_download_exists_only_once_its_audit_row_does(small_groups_url, tmp_path, downloads, monkeypatch):
    url = f"duckdb:///{tmp_path / 'audit.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    store.record_audit(engine, None, "setup", "")
    monkeypatch.setenv("RELQ_DATABASE_URL", url)

    def page():
        import pandas as pd

        from relq import ui

        ui.download_csv(pd.DataFrame({"region": ["EU"], "rq": [70.0]}), "scores.csv", key="dl")

    at = AppTest.from_function(page, default_timeout=60)
    at.session_state["relq_demo_checked"] = True
    at.run()
    assert not at.exception
    assert "scores.csv" in downloads and not dict(downloads)  # offered, not made
    with engine.begin() as conn:  # the audit log cannot be written: the download must fail
        conn.execute(sa.text("ALTER TABLE audit_log RENAME TO audit_log_gone"))
    with pytest.raises(sa.exc.SQLAlchemyError):
        downloads["scores.csv"]
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_log_gone RENAME TO audit_log"))
    assert b"EU" in downloads["scores.csv"]
    log = store.audit_log(engine)
    assert log[log["action"] == "export"]["detail"].str.contains("scores.csv").sum() == 1
    engine.dispose()


SURVEY = _csv("response_id,submitted_at,nps", "R1,2025-01-02 10:00,9", "R2,2025-01-03 10:00,3")


def test_an_import_and_its_audit_row_are_one_transaction(engine, table_counts):
    result = import_file(engine, SURVEY, file_name="survey.csv", user="ana@example.com")
    log = store.audit_log(engine)
    imports = log[log["action"] == "import"]
    assert imports["user_email"].tolist() == ["ana@example.com"]
    assert json.loads(imports["detail"].iloc[0])["import_id"] == result.import_id

    store.undo_import(engine, result.import_id, user="ana@example.com")
    assert (store.audit_log(engine)["action"] == "undo_import").sum() == 1
    before = table_counts(engine)
    rename = (  # ClickHouse spells it RENAME TABLE
        "RENAME TABLE audit_log TO audit_log_gone"
        if engine.dialect.name.startswith(("chdb", "clickhouse"))
        else "ALTER TABLE audit_log RENAME TO audit_log_gone"
    )
    with engine.begin() as conn:  # the audit row cannot be written: the import must not land
        conn.execute(sa.text(rename))
    # one transaction on DuckDB and PostgreSQL; on ClickHouse the import removes what it wrote
    with pytest.raises((sa.exc.SQLAlchemyError, ImportRejected)):
        import_file(engine, SURVEY, file_name="survey.csv", user="ana@example.com")
    assert table_counts(engine) == before


def test_the_cli_import_is_audited_once(tmp_path):
    import os
    import subprocess
    import sys

    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    survey = tmp_path / "survey.csv"
    survey.write_bytes(SURVEY)
    run = subprocess.run(
        [sys.executable, "-m", "relq", "import", str(survey)],
        capture_output=True,
        text=True,
        env={**os.environ, "RELQ_DATABASE_URL": url},
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    log = store.audit_log(store.get_engine(url))
    assert log["action"].tolist() == ["import"] and log["user_email"].iloc[0].startswith("cli")


def test_the_counts_behind_the_rule_are_the_same_on_both_engines(engine):
    """Respondents (a response without a customer counts as one) and customers, in the database."""
    import_file(
        engine,
        _csv("customer_id,name,region", "A1,Ann,EU", "A2,Bo,EU", "A3,Cy,US"),
        file_name="customers.csv",
    )
    import_file(
        engine,
        _csv(
            "response_id,customer_id,submitted_at,nps",
            "S1,A1,2025-01-02 10:00,9",
            "S2,A1,2025-02-02 10:00,8",
            "S3,A2,2025-02-03 10:00,3",
            "S4,,2025-02-04 10:00,5",
        ),
        file_name="survey.csv",
    )
    eu = SegmentFilter(customer=(("region", ("EU",)),))
    with engine.connect() as conn:
        assert privacy.view_size(conn, SegmentFilter()) == privacy.ViewSize(respondents=3, customers=3)
        assert privacy.view_size(conn, eu) == privacy.ViewSize(respondents=2, customers=2)
        months = privacy.respondents_by_period(conn, SegmentFilter())
        by_region = privacy.respondents_by_segment(conn, SegmentFilter(), "region")
        names = set(privacy.personal_names(conn))
    assert sorted(months["customers"].tolist()) == [1, 3]
    assert dict(zip(by_region["segment"], by_region["customers"], strict=True)) == {"EU": 2}
    assert {"Ann", "Bo", "Cy"} <= names

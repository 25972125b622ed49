"""Cases on DuckDB and on a real PostgreSQL: opened from a list or by the rules after an import,
due by the reason's SLA in business days, worked open → contacted → resolved, never two open for
one customer and reason, a stale save refused with a sentence — and whether the calls worked."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from loop_data import import_customers, import_survey, import_transactions
from scipy import stats as sp_stats

from relq import store
from relq.analyses import cases as case_rules
from relq.exceptions import CaseConflict, RelqError
from relq.outputs.followup import follow_up_import
from relq.store import cases, schema
from relq.store.filters import SegmentFilter


@pytest.fixture(params=["duckdb", "postgres"])
def engine(request):
    """Cases and alerts live on DuckDB and PostgreSQL (ClickHouse holds no row-by-row state):
    the same test on both."""
    return request.getfixturevalue(f"{request.param}_engine")


CUSTOMERS = [
    {"customer_id": "C1", "owner": "Sarah Mitchell", "region": "EMEA"},
    {"customer_id": "C2", "owner": "James Carter", "region": "EMEA"},
    {"customer_id": "C3", "owner": "Priya Nair", "region": "APAC"},
    {"customer_id": "C4", "owner": "", "region": "APAC"},
]


def _audit(engine, action: str) -> pd.DataFrame:
    log = store.audit_log(engine)
    return log[log["action"] == action]


@pytest.mark.parametrize("start", pd.date_range("2026-11-23", "2026-11-29").date)  # Monday … Sunday
@pytest.mark.parametrize("days", [0, 1, 2, 5, 7])
def test_due_dates_count_business_days_like_pandas_bdate_range(start, days):
    expected = pd.bdate_range(start=start, periods=days + 1)[-1].date()
    assert cases.business_days_after(start, days) == expected


def test_opening_cases_takes_the_crm_owner_and_the_reasons_sla_and_never_opens_a_second_one(engine):
    import_customers(engine, CUSTOMERS)
    now = datetime(2026, 11, 27, 10, 0)  # a Friday
    opened = cases.open_cases(
        engine,
        ["C1", "C2", "C4", "NOPE"],
        "detractor_comment",
        user="lead@example.com",
        source="test",
        now=now,
    )
    assert len(opened.opened) == 3 and opened.unknown == ("NOPE",)
    with engine.connect() as conn:
        table = cases.case_table(conn, today=now.date()).set_index("customer_id")
    assert table.loc["C1", "owner"] == "Sarah Mitchell"  # the CRM owner
    assert table.loc["C4", "owner"] == "lead@example.com"  # no CRM owner: whoever opened it
    assert set(table["due_on"]) == {date(2026, 12, 1)}  # Friday + 2 business days
    assert set(table["status"]) == {"Open"}
    again = cases.open_cases(engine, ["C1", "C3"], "detractor_comment", user="x", source="test", now=now)
    assert again.already_open == ("C1",) and len(again.opened) == 1
    assert "already had an open case for this reason" in again.sentence("detractor_comment")
    # another reason is another case
    assert len(cases.open_cases(engine, ["C1"], "at_risk", user="x", source="test").opened) == 1
    # once closed, the customer may get a new one for the same reason
    c1 = int(table.loc["C1", "case_id"])
    cases.update_case(engine, c1, 1, user="x", status="resolved", outcome="Issue fixed")
    assert len(cases.open_cases(engine, ["C1"], "detractor_comment", user="x", source="test").opened) == 1
    audit = _audit(engine, "case_open")
    assert len(audit) == 4 and audit["detail"].str.contains('"reason"').all()


def test_the_database_itself_refuses_a_second_open_case_for_one_customer_and_reason(engine):
    import_customers(engine, CUSTOMERS)
    cases.open_cases(engine, ["C1"], "at_risk", user="x", source="test")
    now = datetime.now()
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                schema.cases.insert().values(
                    customer_id="C1",
                    reason="at_risk",
                    status="open",
                    opened_at=now,
                    updated_at=now,
                    version=1,
                    open_key="C1|at_risk",
                )
            )


def test_a_case_moves_open_contacted_resolved_and_refuses_what_cannot_follow(engine):
    import_customers(engine, CUSTOMERS)
    (case_id,) = cases.open_cases(engine, ["C2"], "at_risk", user="lead", source="test").opened
    contacted = cases.update_case(
        engine, case_id, 1, user="lead", status="contacted", note="Left a voicemail"
    )
    assert contacted["status"] == "contacted" and contacted["contacted_at"] is not None
    assert contacted["version"] == 2
    with pytest.raises(RelqError, match="outcome"):
        cases.update_case(engine, case_id, 2, user="lead", status="resolved")
    with pytest.raises(RelqError, match="can only become resolved or no answer"):
        cases.update_case(engine, case_id, 2, user="lead", status="open")
    resolved = cases.update_case(
        engine, case_id, 2, user="lead", status="resolved", outcome="Goodwill gesture", owner="Ana"
    )
    assert resolved["status"] == "resolved" and resolved["closed_at"] is not None
    assert resolved["open_key"] is None and resolved["owner"] == "Ana" and resolved["version"] == 3
    with engine.connect() as conn:
        history = cases.case_history(conn, case_id)
    assert list(history["action"]) == ["opened", "change", "note", "change", "change", "change"]
    assert "Left a voicemail" in set(history["detail"])
    assert len(_audit(engine, "case_update")) == 2


def test_a_stale_save_is_refused_with_who_changed_what_and_nothing_is_lost(engine):
    import_customers(engine, CUSTOMERS)
    (case_id,) = cases.open_cases(engine, ["C3"], "worse_quadrant", user="x", source="test").opened
    # Ana and Ben both opened the case at version 1; Ben saves first
    cases.update_case(engine, case_id, 1, user="ben@example.com", owner="Ben", note="I take this one")
    with pytest.raises(CaseConflict) as conflict:
        cases.update_case(engine, case_id, 1, user="ana@example.com", status="contacted", note="Called them")
    sentence = str(conflict.value)
    assert "ben@example.com" in sentence and "owner Priya Nair → Ben" in sentence and "Reload" in sentence
    with engine.connect() as conn:
        case = cases.get_case(conn, case_id)
        notes = set(cases.case_history(conn, case_id)["detail"])
    assert case["owner"] == "Ben" and case["status"] == "open" and case["version"] == 2
    assert "Called them" not in notes and "I take this one" in notes
    assert len(_audit(engine, "case_update")) == 1  # the refused save left no record
    # Ana reloads (version 2) and saves again: both changes stand
    cases.update_case(engine, case_id, 2, user="ana@example.com", status="contacted", note="Called them")
    with engine.connect() as conn:
        case = cases.get_case(conn, case_id)
    assert (case["owner"], case["status"], case["version"]) == ("Ben", "contacted", 3)


def test_reopening_a_case_when_another_one_is_open_gets_a_sentence(engine):
    import_customers(engine, CUSTOMERS)
    (first,) = cases.open_cases(engine, ["C1"], "comment", user="x", source="test").opened
    cases.update_case(engine, first, 1, user="x", status="no_answer")
    (second,) = cases.open_cases(engine, ["C1"], "comment", user="x", source="test").opened
    with pytest.raises(RelqError, match="already has an open case for this reason"):
        cases.update_case(engine, first, 2, user="x", status="open")
    assert second != first


def _wave(
    day: str, levels: dict[str, tuple[int, int, int]], comments: dict[str, str] = (), prefix: str = "W"
):
    rows = []
    for cid, (nps, trust, satisfaction) in levels.items():
        rows.append(
            {
                "response_id": f"{prefix}-{cid}",
                "customer_id": cid,
                "submitted_at": f"{day} 10:00",
                "nps": nps,
                "trust": trust,
                "satisfaction": satisfaction,
                "comment": dict(comments).get(cid, ""),
            }
        )
    return rows


def test_rules_open_cases_after_an_import_for_new_detractors_with_a_comment_and_worse_quadrants(engine):
    import_customers(engine, CUSTOMERS, after=follow_up_import)
    first = import_survey(
        engine,
        _wave(
            "2026-03-02",
            {"C1": (3, 6, 6), "C2": (4, 6, 6), "C3": (9, 6, 6), "C4": (8, 6, 6)},
            {"C1": "Support took a week to answer", "C3": "Great team"},
            "W1",
        ),
        "wave1.csv",
        after=follow_up_import,
    )
    assert any("Every new detractor with a comment: Opened 1 case" in m for m in first.follow_up)
    with engine.connect() as conn:
        table = cases.case_table(conn)
    assert list(table["customer_id"]) == ["C1"]  # C2 is a detractor without a comment; C3 a promoter
    assert "Support took a week to answer" in table["detail"].iloc[0]
    assert f"import {first.import_id}" in table["source"].iloc[0]
    second = import_survey(
        engine,
        _wave(
            "2026-06-01",
            {"C1": (2, 6, 6), "C3": (8, 6, 2), "C4": (8, 6, 6)},
            {"C1": "Still waiting"},
            "W2",
        ),
        "wave2.csv",
        after=follow_up_import,
    )
    assert any("already had an open case for this reason" in m for m in second.follow_up)
    with engine.connect() as conn:
        table = cases.case_table(conn)
    by_reason = table.groupby("reason_key")["customer_id"].apply(sorted).to_dict()
    assert by_reason == {"detractor_comment": ["C1"], "worse_quadrant": ["C3"]}
    moved = table[table["reason_key"] == "worse_quadrant"]["detail"].iloc[0]
    assert moved.startswith("Advocates in the making → Trusting but dissatisfied")


def test_a_high_value_account_turning_at_risk_gets_a_case_after_a_first_run_that_only_learns(engine):
    rows = [{**c, "annual_value": 90000 if c["customer_id"] == "C1" else 1000} for c in CUSTOMERS]
    import_customers(engine, rows)
    case_rules.save_rule_settings(
        engine, "high_value_at_risk", True, {"value_tiers": [], "min_annual_value": 50000}, "ana"
    )
    orders = import_transactions(
        engine, [(c["customer_id"], "2026-05-20", 100.0) for c in CUSTOMERS], after=follow_up_import
    )
    assert any("First run" in m for m in orders.follow_up)  # learns who is at risk, opens nothing
    import_survey(
        engine, _wave("2026-06-01", {c["customer_id"]: (9, 6, 6) for c in CUSTOMERS}, prefix="W1"), "w1.csv"
    )
    turned = import_survey(  # the next quarter's wave: at risk compares an account's waves
        engine,
        _wave("2026-07-10", {"C1": (2, 3, 3), "C2": (2, 3, 3)}, prefix="W2"),
        "w2.csv",
        after=follow_up_import,
    )
    assert any("A high-value account turning at risk: Opened 1 case" in m for m in turned.follow_up)
    with engine.connect() as conn:
        table = cases.case_table(conn)
    high = table[table["reason_key"] == "high_value_at_risk"]
    assert list(high["customer_id"]) == ["C1"]  # C2 turned at risk too, but is not high value
    assert "worth 90,000 a year" in high["detail"].iloc[0]


def test_rules_can_be_switched_off_and_bad_parameters_get_a_sentence(engine):
    case_rules.save_rule_settings(engine, "detractor_comment", False, {}, "ana")
    with pytest.raises(RelqError, match="NPS answer from 0 to 10"):
        case_rules.save_rule_settings(engine, "detractor_comment", True, {"max_nps": 12}, "ana")
    with engine.connect() as conn:
        assert case_rules.rule_settings(conn)["detractor_comment"] == (False, {"max_nps": 6})
    import_customers(engine, CUSTOMERS)
    result = import_survey(
        engine, _wave("2026-03-02", {"C1": (0, 2, 2)}, {"C1": "Awful"}), after=follow_up_import
    )
    assert not any("detractor with a comment" in m for m in result.follow_up)
    assert len(_audit(engine, "edit_case_rule")) == 1


def _effect_company(engine):
    """Four contacted customers and their comparison pool, all in plan Pro, quadrant trusting but
    dissatisfied, RQ band 50–60, detractors; plus two who must not count (another plan, another band)."""
    treated = ["T1", "T2", "T3", "T4"]
    pool = ["K1", "K2", "K3", "K4", "K5"]
    rows = [{"customer_id": c, "plan": "Pro"} for c in treated + pool]
    rows += [{"customer_id": "X1", "plan": "Basic"}, {"customer_id": "X2", "plan": "Pro"}]
    rows = [{**r, "churned_at": "2026-04-01" if r["customer_id"] == "K1" else ""} for r in rows]
    import_customers(engine, rows)
    before = {c: (3, 6, 3) for c in treated + pool + ["X1"]}  # trust 83, satisfaction 33, RQ 55.6
    before["X2"] = (3, 6, 1)  # RQ 50: same quadrant, another band
    import_survey(engine, _wave("2026-03-01", before, prefix="B"), "before.csv")
    next_nps = {"T1": 9, "T2": 7, "T3": 10, "T4": 2, "K2": 6, "K3": 8, "K4": 9, "K5": 3, "X1": 10, "X2": 10}
    after = {c: (n, 6, 4) for c, n in next_nps.items()}
    import_survey(engine, _wave("2026-05-01", after, prefix="A"), "after.csv")
    for cid in treated:
        (case_id,) = cases.open_cases(
            engine, [cid], "detractor_comment", user="x", source="test", now=datetime(2026, 3, 5)
        ).opened
        cases.update_case(engine, case_id, 1, user="x", status="contacted", now=datetime(2026, 3, 10))
        cases.update_case(
            engine, case_id, 2, user="x", status="resolved", outcome="Issue fixed", now=datetime(2026, 3, 20)
        )
    return next_nps


def test_did_it_work_matches_a_hand_computed_comparison_and_scipys_one_sample_t(engine):
    next_nps = _effect_company(engine)
    with engine.connect() as conn:
        effects = case_rules.case_effects(conn, horizon_days=30)
    table = effects.table.set_index("outcome")

    def score(n):
        return 100.0 if n >= 9 else -100.0 if n <= 6 else 0.0

    # the comparison customers with a next answer: K2…K5 (K1 churned before answering again)
    comparison = np.mean([score(next_nps[k]) for k in ("K2", "K3", "K4", "K5")])
    differences = np.array([score(next_nps[t]) - comparison for t in ("T1", "T2", "T3", "T4")])
    reference = sp_stats.ttest_1samp(differences, 0.0)
    low, high = reference.confidence_interval(0.95)
    nps = table.loc["NPS of the next response"]
    assert nps["cases"] == 4 and nps["comparisons"] == 16
    assert nps["difference"] == pytest.approx(differences.mean())
    assert (nps["low"], nps["high"]) == (pytest.approx(low), pytest.approx(high))
    assert nps["p"] == pytest.approx(reference.pvalue)
    # still a customer 30 days after the contact day: K1 churned on 1 April
    kept = table.loc["Still a customer 30 days later (%)"]
    assert kept["comparable"] == pytest.approx(80.0) and kept["difference"] == pytest.approx(20.0)
    assert effects.closed == 4 and effects.compared == 4
    assert "observational" in case_rules.EFFECT_CAVEAT


def test_case_counts_follow_the_segment_filter(engine):
    import_customers(engine, CUSTOMERS)
    cases.open_cases(engine, ["C1", "C2", "C3"], "at_risk", user="x", source="test")
    with engine.connect() as conn:
        emea = cases.case_counts(conn, SegmentFilter().with_dimension("region", ["EMEA"]))
        everyone = cases.case_counts(conn)
    assert int(emea["open"].sum()) == 2 and int(everyone["open"].sum()) == 3
    assert int(emea["customers"].sum()) == 2


def test_the_cli_import_runs_the_rules_and_says_what_they_opened(tmp_path, monkeypatch, capsys):
    from loop_data import customers_csv, survey_csv

    from relq.cli import main

    monkeypatch.setenv("RELQ_DATABASE_URL", f"duckdb:///{tmp_path / 'cli.duckdb'}")
    (tmp_path / "customers.csv").write_bytes(customers_csv(CUSTOMERS))
    (tmp_path / "survey.csv").write_bytes(
        survey_csv(_wave("2026-03-02", {"C1": (2, 5, 5), "C2": (9, 5, 5)}, {"C1": "Nobody calls back"}))
    )
    assert main(["import", str(tmp_path / "customers.csv"), "--kind", "customers"]) == 0
    assert main(["import", str(tmp_path / "survey.csv"), "--kind", "survey"]) == 0
    out = capsys.readouterr().out
    assert "Every new detractor with a comment: Opened 1 case (detractor with a comment)." in out
    engine = store.get_engine(f"duckdb:///{tmp_path / 'cli.duckdb'}")
    with engine.connect() as conn:
        assert cases.case_table(conn)["customer_id"].tolist() == ["C1"]


def test_on_clickhouse_cases_and_alerts_say_they_need_duckdb_or_postgresql(chdb_engine):
    from relq.outputs.alerting import run_alerts

    with pytest.raises(RelqError, match="need DuckDB or PostgreSQL"):
        cases.open_cases(chdb_engine, ["C1"], "at_risk", user="x", source="test")
    with pytest.raises(RelqError, match="need DuckDB or PostgreSQL"):
        run_alerts(chdb_engine, user="x")
    # an import there is not held up: only today's churn-risk scores follow it (none on an empty store)
    assert follow_up_import(chdb_engine, 1) == [
        "No churn-risk scores: The data span too little time for a 90-day backtest, so there is no churn-risk score."
    ]

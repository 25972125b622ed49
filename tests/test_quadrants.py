"""Gap quadrants on DuckDB and PostgreSQL: hand-computed counts, pandas references on the demo."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from relq import store
from relq.analyses import quadrants, retention
from relq.analyses.quadrants import QUADRANT_KEYS, QuadrantSpec
from relq.core.instrument import load_instrument
from relq.measures import metrics
from relq.store import latest as latest_pairs
from relq.store import schema
from relq.store.filters import SegmentFilter

PERIOD = SegmentFilter(since=date(2025, 1, 1), until=date(2025, 3, 31))


def _hand_built(engine) -> None:
    """Eight customers whose quadrant (trust × satisfaction) is worked out by hand below."""
    customers = pd.DataFrame(
        {
            "customer_id": list("ABCDEFGH"),
            "name": ["=cmd()", "Bo", "Cy", "Di", "Ed", "Fay", "Gus", "Hal"],
            "region": ["EU", "EU", "US", "US", "EU", "US", "US", "EU"],
            "annual_value": [100.0, 200.0, None, 400.0, 500.0, 600.0, 700.0, 800.0],
            "churned_at": pd.to_datetime([None, "2025-06-01", None, None, None, None, "2025-05-01", None]),
        }
    )
    rows = [
        # A: the later of two in-period responses counts; one after the period does not.
        ("a1", "A", "2025-01-10 09:00", 80.0, 80.0),
        ("a2", "A", "2025-02-10 09:00", 30.0, 70.0),
        ("a3", "A", "2025-04-01 00:00", 90.0, 10.0),
        # B: a tie on submitted_at -> the greater response_id (b2) counts.
        ("b1", "B", "2025-02-01 12:00", 70.0, 20.0),
        ("b2", "B", "2025-02-01 12:00", 20.0, 20.0),
        # C: the latest response lacks satisfaction -> the earlier one with both pillars counts.
        ("c1", "C", "2025-01-05 08:00", 60.0, 40.0),
        ("c2", "C", "2025-03-05 08:00", 90.0, None),
        # D: exactly at the threshold is high; E: just below it on trust is low.
        ("d1", "D", "2025-02-02 10:00", 50.0, 50.0),
        ("e1", "E", "2025-02-02 10:00", 49.9, 50.0),
        # F: only before the period; G: on the last day, late (dates inclusive).
        ("f1", "F", "2024-12-31 23:59", 90.0, 90.0),
        ("g1", "G", "2025-03-31 23:30", 55.0, 10.0),
        # H: trust only; an unmatched response has no customer.
        ("h1", "H", "2025-02-01 10:00", 80.0, None),
        ("u1", None, "2025-02-01 10:00", 10.0, 10.0),
    ]
    responses = pd.DataFrame(
        rows, columns=["response_id", "customer_id", "submitted_at", "trust", "satisfaction"]
    )
    responses["submitted_at"] = pd.to_datetime(responses["submitted_at"])
    responses["nps"] = [9, 10, 0, 3, 5, 6, 7, 10, 8, 10, 2, 9, 9]
    responses["csat"] = [5, 4, 1, 2, 2, 3, 3, 5, 4, 5, 1, 4, 4]
    responses["commitment"] = 60.0
    with engine.begin() as conn:
        store.bulk_insert(conn, schema.customers, customers)
        store.bulk_insert(conn, schema.survey_responses, responses)


# By hand, period 2025-01-01..2025-03-31, trust × satisfaction:
# A (30, 70) low/high · B (20, 20) low/low · C (60, 40) high/low · D (50, 50) high/high
# E (49.9, 50) low/high · G (55, 10) high/low · F, H and the unmatched response are out.
HAND_COUNTS = {
    50.0: {"x_high_y_high": 1, "x_high_y_low": 2, "x_low_y_high": 2, "x_low_y_low": 1},
    # at 55: G (55, 10) stays high/low (boundary); D and E (satisfaction 50) drop to low/low
    55.0: {"x_high_y_high": 0, "x_high_y_low": 2, "x_low_y_high": 1, "x_low_y_low": 3},
    60.0: {"x_high_y_high": 0, "x_high_y_low": 1, "x_low_y_high": 1, "x_low_y_low": 4},
}


@pytest.mark.parametrize("threshold", sorted(HAND_COUNTS))
def test_quadrant_counts_match_hand_computed_reference(engine, threshold):
    _hand_built(engine)
    with engine.connect() as conn:
        got = quadrants.quadrant_counts(conn, PERIOD, QuadrantSpec.at("trust", "satisfaction", threshold))
    assert got == HAND_COUNTS[threshold]


def test_revenue_at_stake_counts_the_year_before_the_data_end_by_hand_whether_summed_or_stored(engine):
    """Revenue at stake: a customer's annual value, else their purchases of the 365 days before the
    data's end (from midnight that day on, as the Retention page counts them) — the same whether
    read from the purchases or from their stored summary. By hand: G's annual value 700 and C's
    10 (at midnight 365 days before) + 30, not the 20 a minute earlier."""
    _hand_built(engine)
    purchases = pd.DataFrame(
        {
            "transaction_id": ["t1", "t2", "t3", "t4"],
            "customer_id": ["C", "C", "C", "D"],
            "occurred_at": pd.to_datetime(
                ["2024-06-30 00:00", "2024-06-29 23:59", "2025-06-01 10:00", "2025-06-30 12:00"]
            ),
            "amount": [10.0, 20.0, 30.0, 5.0],
        }
    )
    with engine.begin() as conn:
        store.bulk_insert(conn, schema.transactions, purchases)
    spec = QuadrantSpec()  # C (60, 40) and G (55, 10) are high trust, low satisfaction
    with engine.connect() as conn:
        summed = quadrants.quadrant_summary(conn, PERIOD, spec).table.set_index("quadrant")
    stored = retention.save_purchase_summary(engine)
    assert stored is not store.dialects.is_clickhouse(engine)
    with engine.connect() as conn:
        assert retention.purchase_summary_ready(conn, retention.churn_basis(conn)) is stored
        from_summary = quadrants.quadrant_summary(conn, PERIOD, spec).table.set_index("quadrant")
    for table in (summed, from_summary):
        assert table.loc["x_high_y_low", "revenue_at_stake"] == pytest.approx(740.0)
        assert table.loc["x_high_y_high", "revenue_at_stake"] == pytest.approx(400.0)  # D's annual value


def test_swapped_axes_swap_the_quadrants_by_hand(engine):
    _hand_built(engine)
    with engine.connect() as conn:
        got = quadrants.quadrant_counts(conn, PERIOD, QuadrantSpec.at("satisfaction", "trust", 50))
    assert got == {"x_high_y_high": 1, "x_high_y_low": 2, "x_low_y_high": 2, "x_low_y_low": 1}
    # the names follow the pillars, not the axis order
    assert (
        quadrants.quadrant_name("x_low_y_high", "satisfaction", "trust")
        == quadrants.QUADRANT_NAMES["x_high_y_low"]
    )


def test_quadrant_filter_selects_hand_computed_customers(engine):
    _hand_built(engine)
    flt = SegmentFilter(since=PERIOD.since, until=PERIOD.until, quadrant="x_high_y_low")
    with engine.connect() as conn:
        ids = set(conn.execute(quadrants.quadrant_customer_ids(flt)).scalars())
        head = metrics.headline(conn, flt)
        whole = set(
            conn.execute(
                sa.select(schema.customers.c.customer_id).where(
                    SegmentFilter(quadrant="x_low_y_low").customer_clause()
                )
            ).scalars()
        )
    assert ids == {"C", "G"}
    assert head.responses == 3  # c1, c2 and g1, all in the period
    # Without a period the latest responses are A's a3 (90, 10) -> high/low, B's b2 and F's f1 (high/high)
    assert whole == {"B"}


def test_quadrant_summary_matches_hand_computed_reference(engine):
    _hand_built(engine)
    with engine.connect() as conn:
        summary = quadrants.quadrant_summary(conn, PERIOD)
    table = summary.table.set_index("quadrant")
    assert summary.customers == 6
    assert summary.counts == HAND_COUNTS[50.0]
    # high trust / low satisfaction = C (c1: nps 0, csat 1, active, no annual value, no purchases)
    # and G (g1: nps 2, csat 1, churned, 700): two detractors, NPS -100, CSAT 0, churn 1 of 2.
    hl = table.loc["x_high_y_low"]
    assert (hl["nps"], hl["csat"], hl["churned"], hl["revenue_at_stake"]) == (-100.0, 0.0, 1, 700.0)
    assert hl["share"] == pytest.approx(100 * 2 / 6)
    # at +5 D (50, 50) and E (49.9, 50) move to low/low; at -5 only E moves, to high/high.
    assert (summary.moved_up, summary.moved_down) == (2, 1)
    assert hl["name"] == "Trusting but dissatisfied"


def test_quadrant_migration_by_hand(engine):
    _hand_built(engine)
    january = SegmentFilter(since=date(2025, 1, 1), until=date(2025, 1, 31))
    later = SegmentFilter(since=date(2025, 2, 1), until=date(2025, 12, 31))
    with engine.connect() as conn:
        moves = quadrants.quadrant_migration(conn, january, later)
    moved = moves[moves["customers"] > 0].set_index(["from", "to"])["customers"].to_dict()
    # A: a1 (80, 80) -> a3 (90, 10); C: c1 (60, 40) has no later response with both pillars.
    assert moved == {("x_high_y_high", "x_high_y_low"): 1}
    assert len(moves) == 16


def test_empty_store_gives_zero_counts_and_nan_scores(engine):
    with engine.connect() as conn:
        summary = quadrants.quadrant_summary(conn, SegmentFilter())
        kind, frame = quadrants.quadrant_picture(conn, SegmentFilter())
        spec = quadrants.resolve_spec(conn, SegmentFilter(), mode="median")
        mix = quadrants.quadrant_mix(conn, SegmentFilter(), QuadrantSpec(), "region")
    assert summary.customers == 0 and set(summary.counts.values()) == {0}
    assert np.isnan(summary.table["nps"]).all()
    assert (kind, len(frame)) == ("points", 0)
    assert spec.x_threshold == 50.0 and mix.empty


@pytest.mark.parametrize(
    ("key", "x", "y", "label"),
    [
        ("x_high_y_low", "trust", "satisfaction", "High trust, low satisfaction"),
        ("x_low_y_high", "satisfaction", "commitment", "Low satisfaction, high commitment"),
        ("x_high_y_high", "trust", "commitment", "High trust, high commitment"),
    ],
)
def test_quadrant_label_reads_as_plain_words(key, x, y, label):
    assert quadrants.quadrant_label(key, x, y) == label
    assert quadrants.quadrant_action(key, x, y)


def test_every_pair_has_a_name_and_action_per_quadrant():
    for x, y in quadrants.PAIRS:
        names = {quadrants.quadrant_name(k, x, y) for k in QUADRANT_KEYS}
        assert len(names) == 4
    assert "competitor" in quadrants.quadrant_action("x_high_y_low", "satisfaction", "commitment")
    assert "still trust you" in quadrants.quadrant_action("x_high_y_low")
    with pytest.raises(ValueError, match="two different pillars"):
        QuadrantSpec("trust", "trust")


# --------------------------------------------------------------------------- demo references


@pytest.fixture(scope="module")
def demo(demo_db_url):
    engine = store.get_engine(demo_db_url)
    with engine.connect() as conn:
        responses = pd.read_sql(sa.select(schema.survey_responses), conn)
        answers = pd.read_sql(sa.select(schema.survey_answers), conn)
        customers = pd.read_sql(sa.select(schema.customers), conn)
    yield engine, responses, answers, customers
    engine.dispose()


def _latest_reference(responses: pd.DataFrame, x: str, y: str, since=None, until=None, waves=None):
    """pandas: each customer's latest response (ties: greater response_id) with both pillars."""
    r = responses.dropna(subset=["customer_id", x, y])
    if since:
        r = r[r["submitted_at"] >= pd.Timestamp(since)]
    if until:
        r = r[r["submitted_at"] < pd.Timestamp(until) + pd.Timedelta(days=1)]
    if waves:
        r = r[r["wave"].isin(waves)]
    return r.sort_values(["customer_id", "submitted_at", "response_id"]).groupby("customer_id").tail(1)


def _key_reference(latest: pd.DataFrame, x: str, y: str, tx: float, ty: float) -> pd.Series:
    xs = np.where(latest[x] >= tx, "high", "low")
    ys = np.where(latest[y] >= ty, "high", "low")
    return pd.Series([f"x_{a}_y_{b}" for a, b in zip(xs, ys, strict=True)], index=latest.index)


@pytest.mark.parametrize(
    ("x", "y", "threshold", "since", "until"),
    [
        ("trust", "satisfaction", 50.0, None, None),
        ("satisfaction", "commitment", 60.0, date(2025, 1, 1), date(2025, 12, 31)),
        ("trust", "commitment", 45.0, None, date(2025, 6, 30)),
    ],
)
def test_quadrant_counts_match_pandas_reference_on_demo(demo, x, y, threshold, since, until):
    engine, responses, _, _ = demo
    latest = _latest_reference(responses, x, y, since, until)
    expected = _key_reference(latest, x, y, threshold, threshold).value_counts().to_dict()
    with engine.connect() as conn:
        got = quadrants.quadrant_counts(
            conn, SegmentFilter(since=since, until=until), QuadrantSpec.at(x, y, threshold)
        )
    assert got == {k: expected.get(k, 0) for k in QUADRANT_KEYS}
    assert sum(got.values()) > 100


def test_median_threshold_equals_numpy_median(demo):
    engine, responses, _, _ = demo
    latest = _latest_reference(responses, "trust", "commitment")
    with engine.connect() as conn:
        spec = quadrants.resolve_spec(conn, SegmentFilter(), "trust", "commitment", mode="median")
    assert spec.x_threshold == pytest.approx(float(np.median(latest["trust"])), abs=1e-4)
    assert spec.y_threshold == pytest.approx(float(np.median(latest["commitment"])), abs=1e-4)
    assert spec.mode == "median"


def test_migration_matrix_matches_pandas_crosstab(demo):
    engine, responses, _, _ = demo
    waves = sorted(responses["wave"].dropna().unique())
    first, second = waves[-3], waves[-2]
    a = _latest_reference(responses, "trust", "satisfaction", waves=[first])
    b = _latest_reference(responses, "trust", "satisfaction", waves=[second])
    a = a.assign(key=_key_reference(a, "trust", "satisfaction", 50, 50))[["customer_id", "key"]]
    b = b.assign(key=_key_reference(b, "trust", "satisfaction", 50, 50))[["customer_id", "key"]]
    both = a.merge(b, on="customer_id", suffixes=("_from", "_to"))
    expected = pd.crosstab(both["key_from"], both["key_to"]).reindex(
        index=QUADRANT_KEYS, columns=QUADRANT_KEYS, fill_value=0
    )
    with engine.connect() as conn:
        got = quadrants.quadrant_migration(
            conn, SegmentFilter(waves=(first,)), SegmentFilter(waves=(second,))
        )
    matrix = got.pivot(index="from", columns="to", values="customers").reindex(
        index=QUADRANT_KEYS, columns=QUADRANT_KEYS
    )
    np.testing.assert_array_equal(matrix.to_numpy(), expected.to_numpy())
    assert matrix.to_numpy().sum() > 50


def _alpha_reference(answers: pd.DataFrame, response_ids, pillar: str) -> float:
    """Cronbach's α by the textbook formula in pandas (listwise, reverse-coded)."""
    instrument = load_instrument()
    items = instrument.items_of(pillar)
    wide = answers[answers["response_id"].isin(response_ids)].pivot(
        index="response_id", columns="item_id", values="value"
    )
    wide = wide[[i.id for i in items]].copy()
    lo, hi = instrument.scale_min, instrument.scale_max
    wide = wide.where(wide.ge(lo) & wide.le(hi))
    for item in items:
        if item.reverse:
            wide[item.id] = lo + hi - wide[item.id]
    wide = wide.dropna()
    k = wide.shape[1]
    return k / (k - 1) * (1 - wide.var(ddof=1).sum() / wide.sum(axis=1).var(ddof=1))


def test_borderline_and_sensitivity_match_pandas_reference(demo):
    engine, responses, answers, _ = demo
    since, until = date(2025, 1, 1), date(2025, 12, 31)
    in_period = responses[
        (responses["submitted_at"] >= pd.Timestamp(since))
        & (responses["submitted_at"] < pd.Timestamp(2026, 1, 1))
    ]
    latest = _latest_reference(responses, "trust", "satisfaction", since, until)
    sem = {}
    for pillar in ("trust", "satisfaction"):
        alpha = _alpha_reference(answers, in_period["response_id"], pillar)
        sem[pillar] = latest[pillar].std(ddof=1) * np.sqrt(1 - alpha)
    borderline = ((latest["trust"] - 50).abs() <= sem["trust"]) | (
        (latest["satisfaction"] - 50).abs() <= sem["satisfaction"]
    )
    key = _key_reference(latest, "trust", "satisfaction", 50, 50)
    up = _key_reference(latest, "trust", "satisfaction", 55, 55)
    down = _key_reference(latest, "trust", "satisfaction", 45, 45)
    with engine.connect() as conn:
        summary = quadrants.quadrant_summary(conn, SegmentFilter(since=since, until=until))
    assert summary.x_sem == pytest.approx(sem["trust"], rel=1e-6)
    assert summary.y_sem == pytest.approx(sem["satisfaction"], rel=1e-6)
    assert summary.borderline == int(borderline.sum()) > 0
    per_quadrant = borderline.groupby(key).sum().to_dict()
    assert summary.table.set_index("quadrant")["borderline"].to_dict() == {
        k: int(per_quadrant.get(k, 0)) for k in QUADRANT_KEYS
    }
    assert (summary.moved_up, summary.moved_down) == (int((up != key).sum()), int((down != key).sum()))
    # the customer lists mark the same customers borderline, read with the SEMs or marked after
    flt = SegmentFilter(since=since, until=until)
    marked = borderline.set_axis(latest["customer_id"])
    with engine.connect() as conn:
        for k in QUADRANT_KEYS:
            listing = quadrants.quadrant_customers(conn, flt, QuadrantSpec(), k, summary.x_sem, summary.y_sem)
            later = quadrants.with_borderline(
                quadrants.quadrant_customers(conn, flt, QuadrantSpec(), k),
                QuadrantSpec(),
                summary.x_sem,
                summary.y_sem,
            )
            assert listing["borderline"].tolist() == later["borderline"].tolist()
            expected = marked.reindex(listing["customer_id"]).astype(bool).tolist()
            assert listing["borderline"].tolist() == expected, k


def test_quadrant_summary_scores_match_pandas_reference_on_demo(demo):
    engine, responses, _, customers = demo
    latest = _latest_reference(responses, "trust", "satisfaction")
    latest = latest.assign(key=_key_reference(latest, "trust", "satisfaction", 50, 50)).merge(
        customers, on="customer_id", how="left"
    )
    with engine.connect() as conn:
        table = quadrants.quadrant_summary(conn, SegmentFilter()).table.set_index("quadrant")
    for key, part in latest.groupby("key"):
        row = table.loc[key]
        promoters, detractors = (part["nps"] >= 9).sum(), (part["nps"] <= 6).sum()
        answered = part["nps"].notna().sum()
        assert row["nps"] == pytest.approx(100 * (promoters - detractors) / answered)
        assert row["csat"] == pytest.approx(100 * (part["csat"] >= 4).sum() / part["csat"].notna().sum())
        assert row["churned"] == part["churned_at"].notna().sum()
        assert row["customers"] == len(part)
    # revenue at stake: annual value, else the last 12 months' purchases (the demo sets annual value)
    assert table["revenue_at_stake"].sum() == pytest.approx(latest["annual_value"].sum())


def test_quadrant_mix_matches_pandas_groupby(demo):
    engine, responses, _, customers = demo
    latest = _latest_reference(responses, "trust", "satisfaction").merge(customers, on="customer_id")
    latest["key"] = _key_reference(latest, "trust", "satisfaction", 50, 50).to_numpy()
    expected = latest.groupby(["region", "key"]).size()
    with engine.connect() as conn:
        mix = quadrants.quadrant_mix(conn, SegmentFilter(), QuadrantSpec(), "region")
    got = mix.set_index(["segment", "quadrant"])["customers"]
    assert got[got > 0].sort_index().to_dict() == expected.sort_index().to_dict()
    assert mix.groupby("segment")["share"].sum().round(6).eq(100).all()


def test_picture_switches_to_sql_density_above_the_mark_limit(demo):
    engine, responses, _, _ = demo
    latest = _latest_reference(responses, "trust", "satisfaction")
    with engine.connect() as conn:
        kind, points = quadrants.quadrant_picture(conn, SegmentFilter())
        dense_kind, density = quadrants.quadrant_picture(conn, SegmentFilter(), max_points=100)
    assert (kind, len(points)) == ("points", len(latest))
    assert dense_kind == "density" and density["customers"].sum() == len(latest)
    expected = (
        latest.assign(
            x=np.floor(np.minimum(latest["trust"], 98.75) / 2.5) * 2.5,
            y=np.floor(np.minimum(latest["satisfaction"], 98.75) / 2.5) * 2.5,
        )
        .groupby(["x", "y"])
        .size()
    )
    assert density.set_index(["x", "y"])["customers"].to_dict() == expected.to_dict()


def test_quadrant_view_gives_the_cards_and_picture_of_the_pandas_reference_from_one_read(demo):
    """The page's one read of the customers in view (quadrant_view) gives what the separate
    summary and picture give, and the points and cells of a pandas reference built from the
    stored responses: same customers in the same quadrants, same cell counts."""
    engine, responses, _, _ = demo
    customers = pd.read_sql(sa.select(schema.customers.c.customer_id, schema.customers.c.region), engine)
    region = sorted(customers["region"].dropna().unique())[0]
    in_region = set(customers.loc[customers["region"] == region, "customer_id"])
    flt = SegmentFilter().with_dimension("region", [region])
    spec = QuadrantSpec("satisfaction", "commitment", 55.0, 45.0, "target")
    latest = _latest_reference(responses[responses["customer_id"].isin(in_region)], spec.x, spec.y)
    latest = latest.sort_values("customer_id")
    expected_keys = _key_reference(latest, spec.x, spec.y, 55.0, 45.0).tolist()
    with engine.connect() as conn:
        summary, kind, points = quadrants.quadrant_view(conn, flt, spec, max_points=len(latest))
        _, dense_kind, density = quadrants.quadrant_view(conn, flt, spec, max_points=10)
        alone = quadrants.quadrant_summary(conn, flt, spec)
    assert kind == "points" and dense_kind == "density"
    assert points["customer_id"].tolist() == latest["customer_id"].tolist()
    assert points["quadrant"].tolist() == expected_keys
    assert np.allclose(points[["x", "y"]].to_numpy(float), latest[[spec.x, spec.y]].to_numpy(float))
    cells = (
        latest.assign(
            x=np.floor(np.minimum(latest[spec.x], 98.75) / 2.5) * 2.5,
            y=np.floor(np.minimum(latest[spec.y], 98.75) / 2.5) * 2.5,
        )
        .groupby(["x", "y"])
        .size()
    )
    assert density.set_index(["x", "y"])["customers"].to_dict() == cells.to_dict()
    assert summary.customers == len(latest) == alone.customers
    pd.testing.assert_frame_equal(summary.table, alone.table)
    assert (summary.borderline, summary.moved_up, summary.moved_down) == (
        alone.borderline,
        alone.moved_up,
        alone.moved_down,
    )
    assert (
        summary.counts
        == pd.Series(expected_keys).value_counts().reindex(QUADRANT_KEYS, fill_value=0).to_dict()
    )


def test_quadrant_customers_list_the_quadrant_with_crm_fields(demo):
    engine, responses, _, _ = demo
    latest = _latest_reference(responses, "trust", "satisfaction")
    expected = set(
        latest.loc[_key_reference(latest, "trust", "satisfaction", 50, 50) == "x_high_y_low", "customer_id"]
    )
    with engine.connect() as conn:
        frame = quadrants.quadrant_customers(conn, SegmentFilter(), QuadrantSpec(), "x_high_y_low")
    assert set(frame["customer_id"]) == expected
    for column in (
        "name",
        "region",
        "last_purchase",
        "open_tickets",
        "latest_comment",
        "trust",
        "satisfaction",
    ):
        assert column in frame
    assert (frame["trust"] >= 50).all() and (frame["satisfaction"] < 50).all()


def test_quadrant_list_shows_each_customers_latest_purchase_with_or_without_the_stored_summary(
    duckdb_demo, demo_company
):
    # Reference: pandas' latest transaction per customer, from the demo company's own rows. The list
    # reads the stored purchase summary once it is current, the purchases before that.
    expected = demo_company.transactions.groupby("customer_id")["occurred_at"].max()

    def last_purchases() -> pd.Series:
        with duckdb_demo.connect() as conn:
            frame = quadrants.quadrant_customers(conn, SegmentFilter(), QuadrantSpec(), "x_low_y_low")
        return pd.to_datetime(frame.set_index("customer_id")["last_purchase"])

    raw = last_purchases()
    assert retention.save_purchase_summary(duckdb_demo)
    with duckdb_demo.connect() as conn:
        assert retention.purchase_summary_ready(conn, retention.churn_basis(conn))
    stored = last_purchases()
    assert len(raw) > 50 and raw.notna().sum() > 50
    for got in (raw, stored):
        pd.testing.assert_series_equal(
            got, pd.to_datetime(expected.reindex(got.index)), check_names=False, check_freq=False
        )


def test_report_json_quadrants_section_via_cli(demo, demo_env, capsys):
    from relq.cli import main

    _, responses, _, _ = demo
    code = main(
        [
            "report",
            "--json",
            "--x",
            "satisfaction",
            "--y",
            "commitment",
            "--threshold",
            "55",
            "--since",
            "2025-01-01",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    latest = _latest_reference(responses, "satisfaction", "commitment", since=date(2025, 1, 1))
    expected = _key_reference(latest, "satisfaction", "commitment", 55, 55).value_counts().to_dict()
    section = report["quadrants"]
    assert (section["x"], section["y"], section["threshold"]) == ("satisfaction", "commitment", 55.0)
    assert section["counts"] == {k: expected.get(k, 0) for k in QUADRANT_KEYS}


# --------------------------------------------------------------------------- stored latest pairs


def _quadrant_figures(conn, flt: SegmentFilter, spec: QuadrantSpec) -> dict:
    """Every figure the Gap quadrants page reads through each customer's latest response."""
    summary, _kind, picture = quadrants.quadrant_view(conn, flt, spec)
    return {
        "counts": pd.Series(quadrants.quadrant_counts(conn, flt, spec)),
        "frame": quadrants.latest_frame(conn, flt, spec),
        "table": summary.table,
        "picture": picture,
        "list": quadrants.quadrant_customers(conn, flt, spec, "x_high_y_low").sort_values("customer_id"),
        "mix": quadrants.quadrant_mix(conn, flt, spec, "plan"),
        "median": pd.Series(dataclasses.astuple(quadrants.resolve_spec(conn, flt, spec.x, spec.y, "median"))),
    }


def test_stored_latest_pairs_give_the_quadrants_of_the_responses_themselves_and_stop_when_data_change(
    engine, demo_company, statements
):
    """Each customer's latest response per pillar pair, stored after every change of the data,
    stands in for ranking the responses when a view covers the whole history with every wave and
    flag (and each customer's latest comment for the lists): counts (equal to the pandas reference
    above), cards, picture, customer list, mix and median thresholds equal those of the responses
    themselves, for the whole company, a region and a quadrant, either axis order. A view with a period reads the responses. Once the data change the
    stored rows are not read: a customer's new response moves them at once, before the rebuild."""
    store.load_demo(engine, demo_company)
    region = sorted(demo_company.customers["region"].unique())[0]
    views = {
        "all": SegmentFilter(),
        "region": SegmentFilter().with_dimension("region", [region]),
        "quadrant": SegmentFilter(quadrant="x_high_y_low"),
    }
    specs = [QuadrantSpec(), QuadrantSpec.at("commitment", "satisfaction", 55.0)]
    with engine.connect() as conn:
        raw = {(v, s): _quadrant_figures(conn, flt, s) for v, flt in views.items() for s in specs}
        raw_period = quadrants.quadrant_counts(conn, PERIOD, specs[0])
    stored = not store.dialects.is_clickhouse(engine)  # ClickHouse keeps no stored tables
    assert latest_pairs.save_latest_pairs(engine) is stored
    statements.clear()
    with engine.connect() as conn:
        assert latest_pairs.latest_pairs_ready(conn) is stored
        for (v, s), expected in raw.items():
            got = _quadrant_figures(conn, views[v], s)
            for name, frame in expected.items():
                if isinstance(frame, pd.Series):
                    pd.testing.assert_series_equal(got[name], frame, obj=f"{v} {s.x}/{s.y} {name}")
                else:
                    pd.testing.assert_frame_equal(
                        got[name].reset_index(drop=True),
                        frame.reset_index(drop=True),
                        check_exact=False,
                        rtol=1e-12,
                        obj=f"{v} {s.x}/{s.y} {name}",
                    )
    assert any("FROM latest_pairs" in s for s in statements) is stored
    assert any("FROM latest_comments" in s for s in statements) is stored  # the lists' latest comments
    responses = pd.DataFrame(demo_company.responses)
    reference = _latest_reference(responses, "trust", "satisfaction")
    assert raw[("all", specs[0])]["counts"].to_dict() == (
        _key_reference(reference, "trust", "satisfaction", 50, 50)
        .value_counts()
        .reindex(QUADRANT_KEYS)
        .to_dict()
    )
    statements.clear()
    with engine.connect() as conn:
        assert not latest_pairs.latest_pairs_fit(PERIOD)
        assert quadrants.quadrant_counts(conn, PERIOD, specs[0]) == raw_period
        quadrants.quadrant_customers(conn, PERIOD, specs[0], "x_high_y_low")
    assert not any("FROM latest_pairs" in s or "FROM latest_comments" in s for s in statements)
    # a customer at risk answers again, happily, in a new import: counted at once
    frame = raw[("all", specs[0])]["frame"]
    low = frame[(frame["x"] < 50) & (frame["y"] < 50)]["customer_id"].iloc[0]
    happy = responses.iloc[[0]].assign(
        response_id="R-happy",
        customer_id=low,
        submitted_at=responses["submitted_at"].max() + pd.Timedelta(hours=1),
        trust=90.0,
        satisfaction=90.0,
    )
    with engine.begin() as conn:
        store.bulk_insert(
            conn, schema.survey_responses, happy[[c for c in happy if c in schema.survey_responses.c]]
        )
        store.note_data_change(conn, "import")
    with engine.connect() as conn:
        assert not latest_pairs.latest_pairs_ready(conn)
        counts = quadrants.quadrant_counts(conn, SegmentFilter(), specs[0])
    before = raw[("all", specs[0])]["counts"]
    assert counts["x_low_y_low"] == before["x_low_y_low"] - 1
    assert counts["x_high_y_high"] == before["x_high_y_high"] + 1
    latest_pairs.save_latest_pairs(engine)
    with engine.connect() as conn:
        assert quadrants.quadrant_counts(conn, SegmentFilter(), specs[0]) == counts

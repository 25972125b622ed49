"""Reliability from the database's sufficient statistics, checked against pandas, SciPy and stats.

The demo company is loaded once per backend (DuckDB, a real PostgreSQL server and ClickHouse in-process); every figure
computed by relq.measures.reliability's SQL is compared with the same figure computed in pandas from the
raw answers the generator produced.
"""

from __future__ import annotations

import itertools
import math
import os
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats as sps

from relq import store
from relq.core.instrument import Instrument, Item, load_instrument, pillar_indices
from relq.measures import comparisons, metrics, stats
from relq.measures.reliability import (
    answer_distribution,
    item_sums,
    pillar_correlations,
    recompute_indices,
    reliability,
)
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

INSTRUMENT = load_instrument()
_numbers = itertools.count()


def _pg_database(postgres_url: str):
    name = f"relq_rel_{os.getpid()}_{next(_numbers)}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.create_engine(postgres_url.rsplit("/", 1)[0] + f"/{name}")


@pytest.fixture(scope="module")
def postgres_demo(postgres_url, demo_company):
    engine = _pg_database(postgres_url)
    store.load_demo(engine, demo_company)
    yield engine
    engine.dispose()


@pytest.fixture(params=["duckdb", "postgres", "chdb"])
def demo_store(request):
    """The demo company in DuckDB, PostgreSQL and ClickHouse (chDB) (loaded once per module, read only)."""
    return request.getfixturevalue(f"{request.param}_demo")


def _recoded_wide(answers: pd.DataFrame, instrument: Instrument = INSTRUMENT) -> pd.DataFrame:
    """The pandas reference: one row per response, reverse-keyed items recoded, out-of-scale NaN."""
    wide = answers.pivot(index="response_id", columns="item_id", values="value")
    lo, hi = instrument.scale_min, instrument.scale_max
    out = pd.DataFrame(index=wide.index)
    for item in instrument.items:
        col = wide[item.id].where(wide[item.id].between(lo, hi)) if item.id in wide else np.nan
        out[item.id] = lo + hi - col if item.reverse else col
    return out


def _reference_alpha(block: pd.DataFrame) -> stats.AlphaResult:
    complete = block.dropna()
    return stats.cronbach_alpha(complete.cov().to_numpy(), len(complete))


def test_alpha_from_sql_matches_stats_cronbach_alpha_on_pandas_covariance(demo_store, demo_company):
    wide = _recoded_wide(demo_company.answers)
    with demo_store.connect() as conn:
        rel = reliability(conn, SegmentFilter(), INSTRUMENT)
    for pillar in PILLARS:
        ref = _reference_alpha(wide[[i.id for i in INSTRUMENT.items_of(pillar)]])
        got = rel.alpha[pillar]
        assert got.n == ref.n and got.k == ref.k
        assert got.alpha == pytest.approx(ref.alpha, abs=1e-9)
        assert (got.low, got.high) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_alpha_by_hand_formula_on_pandas_variances_matches_sql(duckdb_demo, demo_company):
    # α = k/(k−1)·(1 − Σσᵢ²/σ²_total) written out in pandas, independent of relq.measures.stats
    wide = _recoded_wide(demo_company.answers)
    with duckdb_demo.connect() as conn:
        rel = reliability(conn, SegmentFilter(), INSTRUMENT)
    for pillar in PILLARS:
        block = wide[[i.id for i in INSTRUMENT.items_of(pillar)]].dropna()
        k = block.shape[1]
        by_hand = k / (k - 1) * (1 - block.var(ddof=1).sum() / block.sum(axis=1).var(ddof=1))
        assert rel.alpha[pillar].alpha == pytest.approx(by_hand, abs=1e-9)


def test_item_statistics_match_pandas_item_rest_correlation_and_alpha_if_deleted(demo_store, demo_company):
    wide = _recoded_wide(demo_company.answers)
    with demo_store.connect() as conn:
        items = reliability(conn, SegmentFilter(), INSTRUMENT).items.set_index("item_id")
    for pillar in PILLARS:
        ids = [i.id for i in INSTRUMENT.items_of(pillar)]
        block = wide[ids].dropna()
        for item_id in ids:
            rest = block.drop(columns=item_id)
            r = np.corrcoef(block[item_id], rest.sum(axis=1))[0, 1]
            alpha_without = stats.cronbach_alpha(rest.cov().to_numpy(), len(rest)).alpha
            assert items.loc[item_id, "item_total_r"] == pytest.approx(r, abs=1e-9)
            assert items.loc[item_id, "alpha_if_deleted"] == pytest.approx(alpha_without, abs=1e-9)
            assert items.loc[item_id, "mean"] == pytest.approx(block[item_id].mean(), abs=1e-9)
            assert items.loc[item_id, "sd"] == pytest.approx(block[item_id].std(ddof=1), abs=1e-9)
        weakens = items.loc[ids, "weakens"]
        expected = (items.loc[ids, "alpha_if_deleted"] > _reference_alpha(block).alpha) | (
            items.loc[ids, "item_total_r"] < 0.30
        )
        assert weakens.tolist() == expected.tolist()


def test_alpha_over_a_period_uses_only_that_periods_responses(duckdb_demo, demo_company):
    since, until = date(2026, 1, 1), date(2026, 6, 30)
    responses = demo_company.responses
    day = pd.to_datetime(responses["submitted_at"]).dt.date
    keep = responses.loc[(day >= since) & (day <= until), "response_id"]
    wide = _recoded_wide(demo_company.answers[demo_company.answers["response_id"].isin(keep)])
    with duckdb_demo.connect() as conn:
        rel = reliability(conn, SegmentFilter(since=since, until=until), INSTRUMENT)
    ref = _reference_alpha(wide[[i.id for i in INSTRUMENT.items_of("trust")]])
    assert 0 < rel.alpha["trust"].n == ref.n < len(demo_company.responses)
    assert rel.alpha["trust"].alpha == pytest.approx(ref.alpha, abs=1e-9)


def test_item_cross_products_equal_numpy_sums(duckdb_demo, demo_company):
    wide = _recoded_wide(demo_company.answers)
    with duckdb_demo.connect() as conn:
        sums = item_sums(conn, SegmentFilter(), INSTRUMENT)
    block = wide[INSTRUMENT.item_ids].dropna().to_numpy()
    assert sums["all"]["n"] == len(block)
    np.testing.assert_allclose(sums["all"]["sums"], block.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sums["all"]["cross"], block.T @ block, rtol=1e-12)


def test_item_sums_of_two_pillars_read_alone_equal_numpy_sums_of_their_items(duckdb_demo, demo_company):
    # The gap quadrants ask only for their two pillars (fewer answers read); each block must be
    # what numpy gives on those items' listwise-complete answers, and no other block comes back.
    wide = _recoded_wide(demo_company.answers)
    with duckdb_demo.connect() as conn:
        sums = item_sums(conn, SegmentFilter(), INSTRUMENT, ("trust", "satisfaction"))
    assert set(sums) == {"trust", "satisfaction"}
    for pillar in ("trust", "satisfaction"):
        block = wide[[i.id for i in INSTRUMENT.items_of(pillar)]].dropna().to_numpy()
        assert sums[pillar]["n"] == len(block)
        np.testing.assert_allclose(sums[pillar]["sums"], block.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(sums[pillar]["cross"], block.T @ block, rtol=1e-12)


def test_pillar_correlations_match_scipy_pearsonr_with_fisher_interval(demo_store, demo_company):
    with demo_store.connect() as conn:
        got = pillar_correlations(conn).set_index(["a", "b"])
        # the stored indices, as the database holds them (DuckDB's FLOAT column is single precision)
        responses = pd.read_sql(sa.select(*[store.schema.survey_responses.c[p] for p in PILLARS]), conn)
    for a, b in itertools.combinations(PILLARS, 2):
        both = responses[[a, b]].dropna()
        ref = sps.pearsonr(both[a], both[b])
        ci = ref.confidence_interval(0.95)
        row = got.loc[(a, b)]
        assert row["n"] == len(both)
        assert row["r"] == pytest.approx(ref.statistic, abs=1e-9)
        assert (row["low"], row["high"]) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_htmt_matches_pandas_item_correlations_reference(duckdb_demo, demo_company):
    wide = _recoded_wide(demo_company.answers)[INSTRUMENT.item_ids].dropna()
    corr = wide.corr()
    with duckdb_demo.connect() as conn:
        got = reliability(conn, SegmentFilter(), INSTRUMENT).htmt.set_index(["a", "b"])["htmt"]

    def mono(ids):
        return np.mean([corr.loc[i, j] for i, j in itertools.combinations(ids, 2)])

    for a, b in itertools.combinations(PILLARS, 2):
        ia = [i.id for i in INSTRUMENT.items_of(a)]
        ib = [i.id for i in INSTRUMENT.items_of(b)]
        hetero = corr.loc[ia, ib].to_numpy().mean()
        assert got[(a, b)] == pytest.approx(hetero / math.sqrt(mono(ia) * mono(ib)), abs=1e-9)


def test_htmt_warning_appears_above_090_for_pillars_customers_cannot_tell_apart(duckdb_engine):
    # Trust and satisfaction items all answer the same latent value: HTMT ≈ 1.
    rng = np.random.default_rng(5)
    n = 200
    trust_sat = rng.integers(1, 8, n)
    other = rng.integers(1, 8, n)
    rows = []
    for r in range(n):
        for item in INSTRUMENT.items:
            base = other[r] if item.pillar == "commitment" else trust_sat[r]
            value = float(np.clip(base + rng.integers(-1, 2), 1, 7))
            rows.append((f"R{r}", item.id, 8 - value if item.reverse else value))
    answers = pd.DataFrame(rows, columns=["response_id", "item_id", "value"])
    responses = pd.DataFrame(
        {"response_id": [f"R{r}" for r in range(n)], "submitted_at": pd.Timestamp("2025-01-01")}
    )
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, store.schema.survey_responses, responses)
        store.bulk_insert(conn, store.schema.survey_answers, answers)
    with duckdb_engine.connect() as conn:
        htmt = reliability(conn, SegmentFilter(), INSTRUMENT).htmt.set_index(["a", "b"])
    assert htmt.loc[("trust", "satisfaction"), "htmt"] > 0.9
    assert (
        "hard" in htmt.loc[("trust", "satisfaction"), "warning"]
        or "hardly" in htmt.loc[("trust", "satisfaction"), "warning"]
    )
    assert htmt.loc[("trust", "commitment"), "warning"] == ""


def test_answer_distribution_matches_pandas_value_counts(duckdb_demo, demo_company):
    with duckdb_demo.connect() as conn:
        dist = answer_distribution(conn, SegmentFilter(), INSTRUMENT)
    answers = demo_company.answers.dropna(subset=["value"])
    ref = answers.groupby(["item_id", "value"]).size()
    got = dist.set_index(["item_id", "value"])["count"]
    pd.testing.assert_series_equal(got.sort_index(), ref.sort_index().astype(got.dtype), check_names=False)
    assert dist.groupby("item_id")["share"].sum().to_numpy() == pytest.approx(1.0)
    assert list(dict.fromkeys(dist["item_id"])) == INSTRUMENT.item_ids


def test_has_answers_agrees_with_the_distribution_being_empty(duckdb_demo):
    from datetime import date

    from relq.measures.reliability import has_answers

    nothing = SegmentFilter(since=date(1990, 1, 1), until=date(1990, 1, 31))
    with duckdb_demo.connect() as conn:
        for flt in (SegmentFilter(), SegmentFilter(customer=(("region", ("EMEA",)),)), nothing):
            assert has_answers(conn, flt, INSTRUMENT) == (
                not answer_distribution(conn, flt, INSTRUMENT).empty
            )
        assert not has_answers(conn, nothing, INSTRUMENT)
        # EMEA's responses stay, their answers go (rolled back): the filter, not the store, decides
        conn.rollback()
        with conn.begin() as transaction:
            emea = SegmentFilter(customer=(("region", ("EMEA",)),))
            in_emea = sa.select(store.schema.survey_responses.c.response_id).where(emea.response_clause())
            answers = store.schema.survey_answers
            conn.execute(answers.delete().where(answers.c.response_id.in_(in_emea)))
            assert not has_answers(conn, emea, INSTRUMENT)
            assert answer_distribution(conn, emea, INSTRUMENT).empty
            assert has_answers(conn, SegmentFilter(), INSTRUMENT)
            assert has_answers(conn, SegmentFilter(customer=(("region", ("APAC",)),)), INSTRUMENT)
            transaction.rollback()


def test_empty_store_gives_nan_alpha_and_empty_tables(engine):
    with engine.connect() as conn:
        rel = reliability(conn, SegmentFilter(), INSTRUMENT)
        dist = answer_distribution(conn, SegmentFilter(), INSTRUMENT)
        corr = pillar_correlations(conn)
    assert all(math.isnan(a.alpha) and a.n == 0 for a in rel.alpha.values())
    assert dist.empty
    assert corr["n"].tolist() == [0, 0, 0] and corr["r"].isna().all()


def test_recompute_after_instrument_change_matches_pillar_indices_in_pandas(engine, demo_company):
    store.load_demo(engine, demo_company)
    changed = Instrument(
        tuple(
            Item(
                i.id,
                "satisfaction" if i.id == "commitment_3" else i.pillar,
                i.text,
                not i.reverse if i.id == "trust_4" else i.reverse,
            )
            for i in INSTRUMENT.items
            if i.id != "satisfaction_2"
        ),
        INSTRUMENT.scale_min,
        INSTRUMENT.scale_max,
    )
    updated = recompute_indices(engine, changed)
    assert updated == demo_company.answers["response_id"].nunique()
    wide = demo_company.answers.pivot(index="response_id", columns="item_id", values="value")
    expected = pillar_indices(wide, changed)
    with engine.connect() as conn:
        got = pd.read_sql(
            sa.select(
                store.schema.survey_responses.c.response_id,
                *[store.schema.survey_responses.c[p] for p in (*PILLARS, "rq")],
            ),
            conn,
        ).set_index("response_id")
    got = got.loc[expected.index]
    for column in (*PILLARS, "rq"):
        np.testing.assert_allclose(
            got[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-12, atol=1e-12
        )
    assert got["trust"].isna().tolist() == expected["trust"].isna().tolist()
    # and the headline follows the new indices
    with engine.connect() as conn:
        head = metrics.headline(conn)
    assert head.pillars["trust"].estimate == pytest.approx(expected["trust"].mean(), rel=1e-9)
    assert head.pillars["trust"].n == expected["trust"].notna().sum()


def test_recompute_with_the_same_instrument_leaves_indices_unchanged(duckdb_engine, demo_company):
    store.load_demo(duckdb_engine, demo_company)
    with duckdb_engine.connect() as conn:
        before = metrics.headline(conn)
    recompute_indices(duckdb_engine, INSTRUMENT)
    with duckdb_engine.connect() as conn:
        after = metrics.headline(conn)
    for p in PILLARS:
        assert after.pillars[p].estimate == pytest.approx(before.pillars[p].estimate, abs=1e-9)
        assert after.pillars[p].n == before.pillars[p].n


@pytest.mark.parametrize("other", ["postgres", "chdb"])
def test_duckdb_postgres_and_clickhouse_give_the_same_headline_alpha_and_segments(
    request, duckdb_demo, other
):
    flt = SegmentFilter(since=date(2025, 7, 1), until=date(2026, 9, 30))
    figures = []
    for engine in (duckdb_demo, request.getfixturevalue(f"{other}_demo")):
        with engine.connect() as conn:
            head = metrics.headline(conn, flt).as_dict()
            alpha = {p: a.as_dict() for p, a in reliability(conn, flt, INSTRUMENT).alpha.items()}
            segments = comparisons.segment_scores(conn, flt, "region", min_n=30)
            corr = pillar_correlations(conn, flt)
        figures.append((head, alpha, segments, corr))
    (h1, a1, s1, c1), (h2, a2, s2, c2) = figures
    assert h1["responses"] == h2["responses"] > 0
    # Every engine stores double precision, so every figure agrees to 1e-9.
    assert _flat(h1) == pytest.approx(_flat(h2), abs=1e-9)
    assert _flat(a1) == pytest.approx(_flat(a2), abs=1e-9)
    s1 = s1.sort_values(["value", "metric"]).reset_index(drop=True)
    s2 = s2.sort_values(["value", "metric"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(s1, s2, rtol=0, atol=1e-9)
    assert (s1["n"] == s2["n"]).all() and (s1["significant"] == s2["significant"]).all()
    pd.testing.assert_frame_equal(c1, c2, rtol=0, atol=1e-9)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out.update({f"{prefix}{k}.{i}": x for i, x in enumerate(v)})
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sums_read(conn, instrument: Instrument = INSTRUMENT) -> dict:
    from relq.measures.reliability import customer_item_sums

    region = sorted(
        store.read_frame(conn, sa.select(store.schema.customers.c.region))["region"].dropna().unique()
    )[0]
    R = store.schema.survey_responses
    wave = conn.execute(sa.select(sa.func.min(R.c.wave))).scalar_one()
    out = {}
    for name, flt in (
        ("all", SegmentFilter()),
        ("region", SegmentFilter().with_dimension("region", [region])),
        ("half year", SegmentFilter(since=date(2026, 1, 1), until=date(2026, 6, 30))),
        ("a wave without speeders", SegmentFilter(waves=(wave,), exclude_flags=("flag_speeder",))),
        ("a quadrant", SegmentFilter(quadrant="x_high_y_low")),
    ):
        out[name, "every item"] = item_sums(conn, flt, instrument)
        out[name, "two pillars"] = item_sums(conn, flt, instrument, ("trust", "satisfaction"))
        out[name, "per customer"] = {"": customer_item_sums(conn, flt, instrument)}
    return out


def _assert_same_sums(got: dict, expected: dict) -> None:
    for key, blocks in expected.items():
        assert got[key].keys() == blocks.keys(), key
        for name, block in blocks.items():
            for part, value in block.items():
                if isinstance(value, np.ndarray):
                    np.testing.assert_allclose(
                        got[key][name][part], value, rtol=1e-12, err_msg=str((key, name, part))
                    )
                else:
                    assert got[key][name][part] == value, (key, name, part)


def test_stored_answer_rows_give_the_sums_of_the_answers_themselves_until_data_or_instrument_change(
    engine, demo_company
):
    """The answers pivoted once after a change of the data stand in for the answers on the
    Measurement and Gap quadrants pages: every item sum, cross-product and per-customer sum equals the
    one pivoted from the answers (whose figures the pandas references above check), for the whole
    company, a region, a period, a wave without its speeders and a quadrant's customers (the rows
    carry what the filter reads). A changed instrument or newer data read the answers again."""
    from relq.measures.reliability import answer_rows_ready, save_answer_rows

    store.load_demo(engine, demo_company)
    with engine.connect() as conn:
        raw = _sums_read(conn)
    clickhouse = store.dialects.is_clickhouse(engine)
    assert save_answer_rows(engine, INSTRUMENT) is (not clickhouse)
    with engine.connect() as conn:
        assert answer_rows_ready(conn, INSTRUMENT) is (not clickhouse)
        _assert_same_sums(_sums_read(conn), raw)
        # numpy on the generator's own answers, through the stored rows
        block = _recoded_wide(demo_company.answers)[INSTRUMENT.item_ids].dropna().to_numpy()
        stored = item_sums(conn, SegmentFilter(), INSTRUMENT)["all"]
        assert stored["n"] == len(block)
        np.testing.assert_allclose(stored["cross"], block.T @ block, rtol=1e-12)
        # trust_4 keyed the other way: the stored rows no longer fit, the answers are read
        flipped = Instrument(
            tuple(
                Item(i.id, i.pillar, i.text, not i.reverse if i.id == "trust_4" else i.reverse)
                for i in INSTRUMENT.items
            ),
            INSTRUMENT.scale_min,
            INSTRUMENT.scale_max,
        )
        assert not answer_rows_ready(conn, flipped)
        block = _recoded_wide(demo_company.answers, flipped)[flipped.item_ids].dropna().to_numpy()
        np.testing.assert_allclose(
            item_sums(conn, SegmentFilter(), flipped)["all"]["cross"], block.T @ block, rtol=1e-12
        )
    with engine.begin() as conn:
        store.note_data_change(conn, "import")
    with engine.connect() as conn:
        assert not answer_rows_ready(conn, INSTRUMENT)


def test_stored_segment_cells_give_the_reliability_sums_of_the_answers_themselves(
    engine, demo_company, statements
):
    """The answer rows' reliability sums added up per segment cell (region, industry, plan, value tier,
    lifecycle stage) stand in for them for the views with no period, wave, flag or quadrant choosing
    such segments — the whole company, a region — every block equal to the answers' own (every item,
    two pillars); the other views read the answer rows. Not built from answer rows of older data."""
    from relq.measures.reliability import save_answer_rows, save_segment_items

    store.load_demo(engine, demo_company)
    with engine.connect() as conn:
        raw = _sums_read(conn)
    clickhouse = store.dialects.is_clickhouse(engine)
    assert save_answer_rows(engine, INSTRUMENT) is (not clickhouse)
    assert save_segment_items(engine, INSTRUMENT) is (not clickhouse)
    statements.clear()
    with engine.connect() as conn:
        _assert_same_sums(_sums_read(conn), raw)
    read = [s for s in statements if "FROM segment_items" in s]
    assert len(read) == (0 if clickhouse else 4)  # all and region, every item and two pillars
    with engine.begin() as conn:
        store.note_data_change(conn, "import")
    assert not save_segment_items(engine, INSTRUMENT)  # the answer rows are of older data
    statements.clear()
    with engine.connect() as conn:
        item_sums(conn, SegmentFilter(), INSTRUMENT)
    assert not any("FROM segment_items" in s for s in statements)


def test_whether_a_view_has_answers_is_read_from_the_stored_answer_rows_as_from_the_answers_themselves(
    engine, demo_company, statements
):
    """The Measurement page first asks whether any response in view answers an instrument item. With
    the answer rows stored it is asked of them (no answer read) and agrees with the answers
    themselves — and with their distribution being empty — for the whole company, a region, a wave,
    a period and an empty period; a region whose only answers lie outside the scale (stored as NULL)
    still has answers, found in the answers themselves; a region without answers has none."""
    from relq.measures.reliability import answer_rows_ready, has_answers, save_answer_rows

    store.load_demo(engine, demo_company)
    regions = sorted(demo_company.customers["region"].dropna().unique())
    wave = sorted(demo_company.responses["wave"].dropna().unique())[0]
    views = {
        "all": SegmentFilter(),
        "region": SegmentFilter(customer=(("region", (regions[0],)),)),
        "wave": SegmentFilter(waves=(wave,)),
        "period": SegmentFilter(since=date(2025, 1, 1), until=date(2025, 3, 31)),
        "empty": SegmentFilter(since=date(1990, 1, 1), until=date(1990, 1, 31)),
    }
    with engine.connect() as conn:
        raw = {name: has_answers(conn, flt, INSTRUMENT) for name, flt in views.items()}
        for name, flt in views.items():
            assert raw[name] == (not answer_distribution(conn, flt, INSTRUMENT).empty), name
    assert raw["all"] and raw["region"] and not raw["empty"]
    clickhouse = store.dialects.is_clickhouse(engine)
    assert save_answer_rows(engine, INSTRUMENT) is (not clickhouse)
    statements.clear()
    with engine.connect() as conn:
        assert {name: has_answers(conn, flt, INSTRUMENT) for name, flt in views.items()} == raw
    assert any("FROM survey_answers" in s for s in statements) is clickhouse

    answers, responses = store.schema.survey_answers, store.schema.survey_responses
    last = SegmentFilter(customer=(("region", (regions[-1],)),))
    in_last = sa.select(responses.c.response_id).where(last.response_clause())
    of_last = sa.and_(answers.c.response_id.in_(in_last), answers.c.item_id.in_(INSTRUMENT.item_ids))
    with engine.begin() as conn:  # every instrument answer of the last region outside the scale
        conn.execute(answers.update().where(of_last).values(value=INSTRUMENT.scale_max + 90))
        store.note_data_change(conn, "import")
    save_answer_rows(engine, INSTRUMENT)
    with engine.connect() as conn:
        assert answer_rows_ready(conn, INSTRUMENT) is (not clickhouse)
        assert has_answers(conn, last, INSTRUMENT)
        assert not answer_distribution(conn, last, INSTRUMENT).empty
    with engine.begin() as conn:  # and then none at all
        conn.execute(answers.delete().where(of_last))
        store.note_data_change(conn, "undo")
    save_answer_rows(engine, INSTRUMENT)
    with engine.connect() as conn:
        assert not has_answers(conn, last, INSTRUMENT)
        assert answer_distribution(conn, last, INSTRUMENT).empty
        assert has_answers(conn, views["region"], INSTRUMENT)


def test_an_answer_rows_table_of_another_relq_version_is_made_again_and_filled(engine, demo_company):
    """A store whose answer rows were made by another RelQ version (other columns) gets the table
    made again when it is opened, and the next rebuild fills it: no error, the same sums."""
    from relq.measures.reliability import answer_rows_ready, save_answer_rows

    store.load_demo(engine, demo_company)
    clickhouse = store.dialects.is_clickhouse(engine)
    save_answer_rows(engine, INSTRUMENT)
    if not clickhouse:  # the rows and their version stay, the table has other columns
        with engine.begin() as conn:
            store.schema.answer_rows.drop(conn)
            conn.exec_driver_sql("CREATE TABLE answer_rows (response_id TEXT NOT NULL, c0 DOUBLE PRECISION)")
    assert store.create_schema(engine) is (not clickhouse)  # says the stored tables need a rebuild
    assert store.create_schema(engine) is False  # made again: nothing outdated any more
    with engine.connect() as conn:
        assert not answer_rows_ready(conn, INSTRUMENT)  # the table made again is empty: not read
    if not clickhouse:
        with engine.connect() as conn:
            columns = conn.execute(sa.text("SELECT * FROM answer_rows LIMIT 0")).keys()
        assert set(columns) == set(store.schema.answer_rows.c.keys())
    with engine.connect() as conn:
        raw = item_sums(conn, SegmentFilter(), INSTRUMENT)["all"]
    assert save_answer_rows(engine, INSTRUMENT) is (not clickhouse)
    with engine.connect() as conn:
        assert answer_rows_ready(conn, INSTRUMENT) is (not clickhouse)
        stored = item_sums(conn, SegmentFilter(), INSTRUMENT)["all"]
    assert stored["n"] == raw["n"]
    np.testing.assert_allclose(stored["cross"], raw["cross"], rtol=1e-12)

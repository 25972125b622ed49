"""HTMT's bootstrap interval over customers (relq.measures.reliability.htmt_intervals) against the
same bootstrap done by hand on the raw answers with numpy, on DuckDB and PostgreSQL."""

from __future__ import annotations

import numpy as np

from relq import store
from relq.core.instrument import configured_instrument
from relq.measures import stats
from relq.measures.reliability import HTMT_SEED, htmt_intervals, reliability
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS


def test_htmt_interval_equals_a_numpy_bootstrap_of_customers_on_the_raw_answers(engine, demo_company):
    store.load_demo(engine, demo_company)
    instrument = configured_instrument()
    with engine.connect() as conn:
        got = htmt_intervals(conn, SegmentFilter(), instrument, resamples=60)
        point = reliability(conn, SegmentFilter(), instrument).htmt
    # The reference: responses answering every item, reverse-coded, grouped by customer
    # (an unmatched response is a customer of its own), customers in sorted order.
    wide = demo_company.answers.pivot(index="response_id", columns="item_id", values="value")
    wide = wide[instrument.item_ids].dropna()
    for item in instrument.items:
        if item.reverse:
            wide[item.id] = instrument.scale_min + instrument.scale_max - wide[item.id]
    owner = demo_company.responses.set_index("response_id")["customer_id"]
    key = owner.reindex(wide.index).fillna(wide.index.to_series())
    keys = np.array(sorted(key.unique()))
    rows = {k: wide.to_numpy()[np.flatnonzero(key.to_numpy() == k)] for k in keys}
    groups = {p: [instrument.item_ids.index(i.id) for i in instrument.items_of(p)] for p in PILLARS}

    def htmt_of(block: np.ndarray) -> np.ndarray:
        return stats.htmt(np.corrcoef(block, rowvar=False), groups)["htmt"].to_numpy()

    np.testing.assert_allclose(got["htmt"], htmt_of(wide.to_numpy()), rtol=1e-9)
    np.testing.assert_allclose(got["htmt"], point["htmt"], rtol=1e-9)
    rng = np.random.default_rng(HTMT_SEED)
    draws = []
    for _ in range(60):
        drawn = rng.integers(0, len(keys), len(keys))
        draws.append(htmt_of(np.vstack([rows[keys[i]] for i in drawn])))
    low, high = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    np.testing.assert_allclose(got["low"], low, rtol=1e-9)
    np.testing.assert_allclose(got["high"], high, rtol=1e-9)
    assert (got["customers"] == len(keys)).all() and (got["resamples"] == 60).all()
    assert ((got["low"] < got["htmt"]) & (got["htmt"] < got["high"])).all()
    assert got["high"].max() < 0.9  # the demo's pillars are told apart

"""The sidebar's "Count each" choice: kept in the URL, applied on every page with survey numbers, and
a weighting that cannot be applied gives a sentence, never a traceback."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from relq.store.filters import SegmentFilter, Weighting

ROOT = Path(__file__).resolve().parent.parent
SURVEY_PAGES = [
    "pages/overview.py",
    "pages/segments.py",
    "pages/quadrants.py",
    "pages/drivers.py",
    "pages/voice.py",
]


def _fingerprint(at: AppTest) -> str:
    parts = [f"{m.label}={m.value}" for m in at.metric]
    parts += [df.value.to_csv() for df in at.dataframe]
    parts += [c.value for c in at.caption]
    parts += [md.value for md in at.markdown]
    return "\n".join(parts)


def test_weighting_round_trips_through_the_query_string():
    flt = SegmentFilter(weighting=Weighting("raked", ("region", "industry")))
    params = flt.to_query_params()
    assert params == {"weight": "raked", "rake": "region,industry"}
    assert SegmentFilter.from_query_params(params).weighting == flt.weighting
    assert SegmentFilter().to_query_params() == {}  # the default counts each response: nothing in the URL
    assert SegmentFilter.from_query_params({"weight": "bogus"}).weighting == Weighting()
    assert SegmentFilter(weighting=Weighting("value")).to_query_params() == {"weight": "value"}
    with pytest.raises(ValueError, match="not a weighting"):
        Weighting("votes")


@pytest.mark.parametrize("page", SURVEY_PAGES)
def test_count_each_changes_every_survey_page_and_goes_into_the_url(demo_env, page):
    # The gap quadrants already count each customer once (their latest response): annual value there.
    scheme = "value" if page == "pages/quadrants.py" else "customer"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    before = _fingerprint(at)
    at.radio(key="flt_weight").set_value(scheme).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.query_params.get("weight") in (scheme, [scheme])
    assert _fingerprint(at) != before


def test_raked_weights_with_chosen_dimensions_open_the_overview(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.radio(key="flt_weight").set_value("raked").run()
    at.multiselect(key="flt_rake").set_value(["region"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.warning or not any("Cannot rake" in w.value for w in at.warning)
    assert at.query_params.get("rake") in ("region", ["region"])
    assert any("raked to the customer base on region" in c.value for c in at.caption)


def test_raking_on_a_value_nobody_in_view_answers_for_is_a_sentence_not_a_traceback(demo_env):
    # The responses of one day cannot cover every account owner of the customer base.
    from relq import store
    from relq.store import catalog

    engine = store.get_engine(demo_env)
    with engine.connect() as conn:
        last = catalog.period_bounds(conn)[1]
    engine.dispose()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.date_input(key="flt_period").set_value((last, last)).run()
    assert not any("No survey responses match" in w.value for w in at.warning)
    at.radio(key="flt_weight").set_value("raked").run()
    at.multiselect(key="flt_rake").set_value(["region", "owner"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Cannot rake" in w.value and "owner" in w.value for w in at.warning)
    assert not any(m.label == "NPS" for m in at.metric)  # no raked number is shown

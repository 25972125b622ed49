"""Comment themes: rules exact on hand examples, bad rules refused, languages, discovery recovering
the demo's planted themes, NPS deltas against statsmodels and the planted effect, both engines,
the filter, the import hook, the CLI and the page's role rules."""

from __future__ import annotations

import json
import math
import threading
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats as sp
from streamlit.testing.v1 import AppTest

from relq import store
from relq.analyses import themes
from relq.ingest import import_file
from relq.ingest import themes as tagging
from relq.ingest.comments import fold, fold_series, languages
from relq.ingest.demo import COMMENT_THEMES, OTHER_LANGUAGE_COMMENTS, generate_demo
from relq.measures import metrics
from relq.store import schema
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent
Z = sp.norm.ppf(0.975)
RULE_OF = {t.name: t.name.capitalize() for t in COMMENT_THEMES[:7]}  # planted → starter rule


def starter(name: str) -> tagging.CompiledRule:
    return tagging.compile_rule(next(r for r in tagging.STARTER_RULES if r.name == name))


# ── rules on hand examples ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("phrases", "exclusions", "text", "found"),
    [
        (("qualite",), (), "La QUALITÉ a baissé", True),  # accents and case folded, both ways
        (("qualité",), (), "quality of the qualite", True),
        (("price",), (), "Prices went up", False),  # a whole word only
        (("price*",), (), "Prices went up", True),  # … unless it ends with *
        (("price*",), (), "the overpriced plan", False),  # * extends to the right only
        (("price*",), ("priceless",), "your team is priceless", False),  # the exclusion is blanked
        (("price*",), ("priceless",), "priceless team, but the price is high", True),
        (("follow up",), (), "no follow-up at all", True),  # spaces and hyphens alike
        (("follow* up",), (), "nobody followed   up", True),
        (("bill",), ("bill of materials",), "the bill of materials is wrong", False),
        (("bill",), (), "billing portal", False),
        (("straße",), (), "Die STRASSE", True),  # ß folds to ss
        (("doesn't work",), (), "It doesn’t work", True),  # curly apostrophe
        (("/late (again|twice)/",), (), "delivery was LATE again", True),  # a regular expression
        (("invoice*",), (), "INVOICES wrong", True),
        (("invoice*",), (), "invoicing", False),  # "invoic-ing" does not start with "invoice"
        (("support",), (), "supporting docs", False),
    ],
)
def test_rule_tagging_is_exact_on_hand_examples(phrases, exclusions, text, found):
    rule = tagging.compile_rule(tagging.ThemeRule("T", phrases, exclusions))
    assert bool(tagging.tag(pd.Series([fold(text)]), [rule])["T"].iloc[0]) is found
    marked, matched = tagging.highlight(text, [rule])
    assert bool(matched) is found
    assert marked.replace("«", "").replace("»", "") == text  # marks only, the text unchanged


def test_word_lookups_tag_exactly_as_the_patterns_do(planted_company):
    """Most comments are decided by word lookups; the answer must be the patterns' own (exclusions
    blanked, then the phrases searched) on every comment of a demo company and a few hard cases."""
    rules = [tagging.compile_rule(r) for r in tagging.STARTER_RULES]
    rules.append(
        tagging.compile_rule(tagging.ThemeRule("Odd", ("/inv.ice/", "doesn't work", "bill*"), ("bill of*",)))
    )
    texts = fold_series(
        pd.concat(
            [
                planted_company.responses["comment"].dropna().drop_duplicates(),
                pd.Series(
                    ["the bill of materials", "a bill of lading", "it doesn't work", "invoice", "bills"]
                ),
            ]
        )
    ).reset_index(drop=True)
    fast = tagging.tag(texts, rules)
    for rule in rules:
        slow = [
            rule.include.search(rule.exclude.sub(lambda m: " " * len(m.group(0)), t) if rule.exclude else t)
            is not None
            for t in texts
        ]
        assert fast[rule.name].tolist() == slow, rule.name


def test_highlight_marks_the_phrases_in_the_original_text():
    marked, matched = tagging.highlight(
        "Le PRIX est élevé; la Livraison tarde.", [starter("Price"), starter("Delivery")]
    )
    assert marked == "Le «PRIX» est élevé; la «Livraison» tarde."
    assert matched == ["PRIX", "Livraison"]


@pytest.mark.parametrize(
    ("rule", "taken", "sentence"),
    [
        (tagging.ThemeRule("", ("price",)), (), "needs a name"),
        (tagging.ThemeRule("Price", ()), (), "has no phrase"),
        (tagging.ThemeRule("Price", ("  ", "")), (), "has no phrase"),
        (tagging.ThemeRule("Prîce", ("price",)), ("price",), "already exists"),  # accents and case
        (tagging.ThemeRule("Price", ("*",)), (), "no letter or digit"),
        (tagging.ThemeRule("Price", ("/(a+)+$/",)), (), "repeats a repetition"),
        (tagging.ThemeRule("Price", ("/(a|ab)*c/",)), (), "repeats alternatives"),
        (tagging.ThemeRule("Price", ("/(late)\\1/",)), (), "back-reference"),
        (tagging.ThemeRule("Price", ("/(?=late)late/",)), (), "look-ahead"),
        (tagging.ThemeRule("Price", ("/a*/",)), (), "matches an empty text"),
        (tagging.ThemeRule("Price", ("/late(/",)), (), "not a valid regular expression"),
        (tagging.ThemeRule("Price", ("/élevé/",)), (), "without them"),
        (tagging.ThemeRule("Price", ("price",), ("/(x+)*y/",)), (), "repeats a repetition"),
        (tagging.ThemeRule("A|B", ("price",)), (), "contains |"),
    ],
)
def test_bad_rules_are_refused_with_a_sentence(rule, taken, sentence):
    with pytest.raises(tagging.ThemeRuleError, match=sentence) as refused:
        tagging.validate_rule(rule, taken)
    assert str(refused.value).endswith(".")


def test_saving_a_rule_versions_it_and_tags_every_comment(duckdb_engine):
    rows = pd.DataFrame(
        {
            "response_id": ["R1", "R2", "R3"],
            "submitted_at": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03"]),
            "nps": [3, 9, 5],
            "comment": ["The dashboards are slow", "Dashboard exports are great", "Nothing to add"],
        }
    )
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, rows)
    tagging.refresh_themes(duckdb_engine)
    again = _statements(duckdb_engine, lambda: tagging.refresh_themes(duckdb_engine))
    assert not any("INSERT INTO theme_sums" in s for s in again)  # nothing new: the sums stand
    tagging.save_rule(duckdb_engine, tagging.ThemeRule("Reporting", ("dashboard*",)), user="ana@example.com")
    with pytest.raises(tagging.ThemeRuleError, match="already exists"):
        tagging.save_rule(duckdb_engine, tagging.ThemeRule("reporting", ("report*",)))
    tagging.save_rule(
        duckdb_engine, tagging.ThemeRule("Reporting", ("dashboard*",), ("exports",)), editing="Reporting"
    )
    with duckdb_engine.connect() as conn:
        tagged = conn.execute(
            sa.select(schema.comment_themes.c.response_id).where(schema.comment_themes.c.theme == "Reporting")
        ).scalars()
        assert sorted(tagged) == ["R1", "R2"]  # "Dashboard exports": the exclusion blanks "exports" only
        history = themes.rule_versions(conn)
    assert history.loc[history["theme"] == "Reporting", "version"].tolist() == [2, 1]
    _assert_the_stored_theme_sums_follow(duckdb_engine, {"Reporting": 2})  # R1, R2
    tagging.delete_rule(duckdb_engine, "Reporting")
    with duckdb_engine.connect() as conn:
        assert "Reporting" not in store_theme_names(conn)
    _assert_the_stored_theme_sums_follow(duckdb_engine, {})


def _assert_the_stored_theme_sums_follow(engine, mentions: dict[str, int]) -> None:
    """After an edit of the themes the stored month sums are current, hold each theme's mentions,
    and give the figures the responses give; the sums per segment cell made from the older month
    sums are not read until made again (as the rebuild after an edit does), and then give them too."""
    from relq.store import themes as stored

    with engine.connect() as conn:
        assert stored.theme_sums_ready(conn) and not stored.theme_cells_ready(conn)
    _assert_the_stored_figures_are_those_of_the_responses(engine, mentions)
    assert themes.save_theme_cells(engine)
    with engine.connect() as conn:
        assert stored.theme_cells_ready(conn)
    _assert_the_stored_figures_are_those_of_the_responses(engine, mentions)


def _assert_the_stored_figures_are_those_of_the_responses(engine, mentions: dict[str, int]) -> None:
    with engine.connect() as conn:
        got = dict(
            conn.execute(
                sa.select(schema.theme_sums.c.theme, sa.func.sum(schema.theme_sums.c.n))
                .where(schema.theme_sums.c.theme != "")
                .group_by(schema.theme_sums.c.theme)
            ).all()
        )
        assert {t: int(n) for t, n in got.items() if t in mentions or n} == mentions
        stored_figures, raw = (
            _theme_figures(conn, SegmentFilter()),
            _from_the_responses(conn, SegmentFilter()),
        )
    assert stored_figures[0] == raw[0]
    pd.testing.assert_frame_equal(stored_figures[1], raw[1], rtol=1e-12, check_dtype=False)


def test_an_analyst_names_a_discovered_theme_and_promotes_it_to_a_rule(duckdb_engine):
    rng = np.random.default_rng(3)
    texts = np.array(
        [
            "The reporting dashboards save us hours",
            "Reporting exports keep failing",
            "The invoice has errors again",
            "Our invoice charged us twice",
            "Delivery came a week late",
            "Delivery keeps slipping by days",
        ],
        dtype=object,
    )[rng.integers(0, 6, 300)]
    rows = pd.DataFrame(
        {
            "response_id": [f"R{i:04d}" for i in range(300)],
            "customer_id": [f"C{i % 90:03d}" for i in range(300)],
            "submitted_at": pd.Timestamp("2025-03-01"),
            "nps": rng.integers(0, 11, 300),
            "comment": texts,
        }
    )
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, rows)
    summary = tagging.refresh_themes(duckdb_engine, k=3)
    assert summary.rediscovered and summary.k == 3
    with duckdb_engine.connect() as conn:
        found = themes.theme_table(conn).query("source == 'discovered'")
    reporting = next(
        t for t, terms in zip(found["theme"], found["terms"], strict=True) if "reporting" in terms
    )
    tagging.promote(
        duckdb_engine, reporting, "Reporting", ["reporting", "dashboard*"], user="ana@example.com"
    )
    tagging.refresh_themes(duckdb_engine)  # nothing new: the promoted theme stays a rule
    with duckdb_engine.connect() as conn:
        table = themes.theme_table(conn).set_index("theme")
        history = themes.rule_versions(conn)
    assert reporting not in table.index
    assert table.loc["Reporting", "source"] == "rule"
    mentioned = table.loc[table["responses"] > 0, "responses"].astype(int)
    _assert_the_stored_theme_sums_follow(duckdb_engine, dict(mentioned))
    assert table.loc["Reporting", "responses"] == int(
        pd.Series(texts).str.contains("Reporting|reporting").sum()
    )
    assert history.query("theme == 'Reporting'")["source"].tolist() == ["discovered"]


def store_theme_names(conn) -> list[str]:
    from relq.store import themes as stored

    return stored.theme_names(conn)


# ── languages ────────────────────────────────────────────────────────────────────────────────


def test_four_languages_are_read_and_others_are_not_themed():
    texts = pd.Series(
        [
            "The delivery was late and the price is too high",
            "La livraison est toujours en retard",
            "Die Lieferung kam wieder zu spät",
            "La entrega llegó tarde otra vez",
            "Great support",
            *[options[0] for options in OTHER_LANGUAGE_COMMENTS.values()],
        ]
    )
    codes = languages(fold_series(texts)).tolist()
    assert codes == ["en", "fr", "de", "es", "und", "it", "pt", "nl", "other"]
    hits = tagging.tag(fold_series(texts[:4]), [starter("Delivery")])["Delivery"]
    assert hits.all()


def test_a_comment_with_more_letters_outside_a_to_z_than_in_it_is_other_by_pythons_own_letter_test():
    """Counted per text with str.isalpha (Python's Unicode letters): a text of lower-case ASCII is
    never "other" (its letters are not counted at all), capitals count as outside a–z."""
    texts = pd.Series(
        ["配送が ok", "配送 ok", "αβγδε ab", "ωmega abc", "the price is too high", "ABCD ef", "", "1234"]
    )
    outside = [sum(ch.isalpha() and not "a" <= ch <= "z" for ch in t) for t in texts]
    inside = [sum("a" <= ch <= "z" for ch in t) for t in texts]
    expected = [o > i for o, i in zip(outside, inside, strict=True)]
    assert expected == [True, False, True, False, False, True, False, False]
    assert (languages(texts) == "other").tolist() == expected
    assert languages(texts)[4] == "en"


# ── discovery recovers the planted themes ────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def planted_company():
    print("generate_demo(customers=4000, seed=11)")
    return generate_demo(customers=4000, seed=11)


def test_discovery_recovers_the_planted_themes_with_purity_at_least_0_8(planted_company):
    """Each of the ten themes the demo's comments were written about is found by a discovered
    theme (TF-IDF + NMF, k = 12, seed 7) at least 80% of whose comments are about it."""
    responses = planted_company.responses.dropna(subset=["comment"])
    folded = fold_series(responses["comment"])
    readable = languages(folded).isin(["en", "fr", "de", "es", "und"])
    ids = responses["response_id"][readable].to_numpy()
    found = tagging.discover(folded[readable].tolist(), k=12, seed=7)
    assigned = tagging.assign(found, folded[readable].tolist())
    assigned["response_id"] = ids[assigned["row"].to_numpy()]
    discovered = {t: set(g["response_id"]) for t, g in assigned.groupby("theme")}
    planted = {t: set(g["response_id"]) for t, g in planted_company.planted_themes.groupby("theme")}
    purity = {}
    for theme, members in planted.items():
        best = max(discovered, key=lambda d: len(members & discovered[d]) / len(members | discovered[d]))
        purity[theme] = len(members & discovered[best]) / len(discovered[best])
    print(purity)
    assert set(purity) == {t.name for t in COMMENT_THEMES}
    assert min(purity.values()) >= 0.8, purity


def test_the_starter_rules_find_exactly_the_planted_themes_they_cover(planted_company):
    responses = planted_company.responses.dropna(subset=["comment"]).reset_index(drop=True)
    hits = tagging.tag(
        fold_series(responses["comment"]), [tagging.compile_rule(r) for r in tagging.STARTER_RULES]
    )
    for planted_name, rule in RULE_OF.items():
        marks = planted_company.planted_themes
        planted = set(marks.loc[marks["theme"] == planted_name, "response_id"])
        assert set(responses["response_id"][hits[rule]]) == planted, rule


# ── NPS with vs without: the planted effect, statsmodels, both engines ───────────────────────


def _planted_delta(company, theme: str) -> float:
    """The NPS difference the demo was written to have: each comment in a covered language
    mentions ``theme`` with its rate for the writer's NPS group, independently."""
    rates = np.array(next(t.rates for t in COMMENT_THEMES if t.name == theme))
    r = company.responses.dropna(subset=["comment", "nps"])
    uncovered = r["comment"].isin([text for options in OTHER_LANGUAGE_COMMENTS.values() for text in options])
    group = np.where(r["nps"] <= 6, 0, np.where(r["nps"] >= 9, 2, 1))
    p = np.where(uncovered, 0.0, rates[group])
    y = np.select([r["nps"] >= 9, r["nps"] <= 6], [1.0, -1.0], 0.0)
    return 100 * ((y * p).sum() / p.sum() - (y * (1 - p)).sum() / (1 - p).sum())


@pytest.fixture(scope="module")
def demo_table(duckdb_demo):
    with duckdb_demo.connect() as conn:
        return themes.theme_table(conn, SegmentFilter())


@pytest.mark.parametrize(
    "planted", ["billing", "price", "onboarding", "communication", "delivery", "product quality"]
)
def test_the_planted_nps_effect_lies_inside_the_reported_interval(demo_company, demo_table, planted):
    truth = _planted_delta(demo_company, planted)
    row = demo_table.set_index("theme").loc[RULE_OF[planted]]
    print(planted, round(truth, 2), round(row["nps_delta_low"], 2), round(row["nps_delta_high"], 2))
    assert row["nps_delta_low"] <= truth <= row["nps_delta_high"]


def _responses(engine, theme: str) -> pd.DataFrame:
    """Response-level data for the outside check (tests only): every response with an NPS, whether
    it has a read comment, whether that comment mentions ``theme``."""
    R, F, T = schema.survey_responses, schema.comment_facts, schema.comment_themes
    query = sa.select(
        R.c.response_id,
        sa.func.coalesce(R.c.customer_id, "~" + R.c.response_id).label("cluster"),
        R.c.nps,
        R.c.trust,
        sa.exists().where(F.c.response_id == R.c.response_id).label("commented"),
        sa.exists().where(T.c.response_id == R.c.response_id, T.c.theme == theme).label("mentions"),
    ).where(R.c.nps.is_not(None))
    with engine.connect() as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _cluster_ols(y, x, groups, constant=True):
    import statsmodels.api as sm

    design = sm.add_constant(x) if constant else x
    fit = sm.OLS(y, design).fit(cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False})
    g = len(np.unique(groups))
    return fit.params, np.asarray(fit.cov_params()) * g / (g - 1)  # CR1's G/(G−1) only


@pytest.mark.parametrize("theme", ["Billing", "Onboarding", "Support"])
def test_theme_nps_delta_matches_statsmodels_ols_with_cluster_robust_variance(duckdb_demo, demo_table, theme):
    """OLS of the −100/0/100 score on an indicator of the theme among the responses with a comment,
    cluster-robust by customer (statsmodels, G/(G−1) correction): its slope and standard error are
    RelQ's NPS delta and the delta's standard error."""
    data = _responses(duckdb_demo, theme)
    data = data[data["commented"]]
    y = np.select([data["nps"] >= 9, data["nps"] <= 6], [100.0, -100.0], 0.0)
    codes = pd.factorize(data["cluster"])[0]
    params, cov = _cluster_ols(y, data["mentions"].astype(float).to_numpy(), codes)
    row = demo_table.set_index("theme").loc[theme]
    assert row["nps_delta"] == pytest.approx(params[1], rel=1e-9)
    se = (row["nps_delta_high"] - row["nps_delta_low"]) / (2 * Z)
    assert se == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-9)
    # the same for a pillar, among responses with a comment and a trust index
    has = data["trust"].notna().to_numpy()
    params, cov = _cluster_ols(
        data["trust"].to_numpy(dtype=float)[has], data["mentions"].astype(float).to_numpy()[has], codes[has]
    )
    assert row["trust_delta"] == pytest.approx(params[1], rel=1e-9)
    assert (row["trust_delta_high"] - row["trust_delta_low"]) / (2 * Z) == pytest.approx(
        math.sqrt(cov[1, 1]), rel=1e-9
    )


def test_theme_impact_interval_matches_a_statsmodels_cluster_robust_delta_method(duckdb_demo, demo_table):
    """Impact 100·ā(1+ȳ): ā and ȳ from one stacked OLS (an indicator per variable, no constant)
    with a cluster-robust covariance by customer (statsmodels), then the delta method."""
    data = _responses(duckdb_demo, "Billing")
    a = ((data["nps"] <= 6) & data["mentions"]).astype(float).to_numpy()
    y = np.select([data["nps"] >= 9, data["nps"] <= 6], [1.0, -1.0], 0.0)
    n = len(data)
    design = np.vstack(
        [np.column_stack([np.ones(n), np.zeros(n)]), np.column_stack([np.zeros(n), np.ones(n)])]
    )
    codes = np.tile(pd.factorize(data["cluster"])[0], 2)
    params, cov = _cluster_ols(np.concatenate([a, y]), design, codes, constant=False)
    grad = 100 * np.array([1 + params[1], params[0]])
    row = demo_table.set_index("theme").loc["Billing"]
    assert row["impact"] == pytest.approx(100 * params[0] * (1 + params[1]), rel=1e-9)
    assert (row["impact_high"] - row["impact_low"]) / (2 * Z) == pytest.approx(
        math.sqrt(grad @ cov @ grad), rel=1e-9
    )


def _nps_with_vs_without(part: pd.DataFrame, rest: pd.DataFrame):
    """relq.measures.clustered's linearised NPS difference of the responses mentioning a theme
    (``part``) and the rest, from their per-customer sums aligned on the same customers."""
    from relq.measures import clustered

    pairs = {"W1": "nps_w", "P1": "promoters", "D1": "detractors"}
    frame = pd.DataFrame(
        {
            **{k: part[v].to_numpy() for k, v in pairs.items()},
            **{k.replace("1", "2"): rest[v].to_numpy() for k, v in pairs.items()},
            "n1": part["nps_w"].to_numpy(),
            "n2": rest["nps_w"].to_numpy(),
        }
    )
    return clustered.period_difference_share(frame, "nps")


@pytest.mark.parametrize("theme", ["Billing", "Onboarding"])
def test_theme_figures_equal_the_clustered_functions_on_per_customer_sums(duckdb_demo, demo_table, theme):
    """The database adds up each theme's sums over its customers and their products with the view's,
    one row per theme; the table's figures are relq.measures.clustered's on the aligned per-customer
    arrays."""
    from relq.analyses.themes import _commented_query, _frame, _nps_query, _theme_query
    from relq.measures import clustered

    flt = SegmentFilter()
    with duckdb_demo.connect() as conn:
        every = _frame(conn, _commented_query(conn, flt)).set_index("cluster")
        part = (
            _frame(conn, _theme_query(conn, flt, themes=[theme])).drop(columns="theme").set_index("cluster")
        )
        everyone = _frame(conn, _nps_query(conn, flt)).set_index("cluster")
    part = part.reindex(every.index, fill_value=0.0)
    rest = every - part
    row = demo_table.set_index("theme").loc[theme]
    share = clustered.csat_interval_clustered(every["n"], part["n"], every["n"])
    assert (row["share"], row["share_low"], row["share_high"]) == pytest.approx(
        (share.score / 100, share.low / 100, share.high / 100), rel=1e-9
    )
    for side, sums in (("with", part), ("without", rest)):
        nps = clustered.nps_interval_clustered(
            sums["nps_w"], sums["promoters"], sums["detractors"], sums["nps_w"]
        )
        assert (row[f"nps_{side}"], row[f"nps_{side}_low"], row[f"nps_{side}_high"]) == pytest.approx(
            (nps.score, nps.low, nps.high), rel=1e-9
        )
    delta = _nps_with_vs_without(part, rest)
    assert (row["nps_delta"], row["nps_delta_low"], row["nps_delta_high"], row["nps_p"]) == pytest.approx(
        (delta.delta, delta.low, delta.high, delta.p_value), rel=1e-9
    )
    mix = clustered.csat_interval_clustered(part["n"], part["negative"], part["n"])
    assert row["negative_share"] == pytest.approx(mix.score / 100, rel=1e-9)
    assert (row["negative_low"], row["negative_high"]) == pytest.approx(
        (mix.low / 100, mix.high / 100), rel=1e-9
    )
    impact = themes.impact_interval(
        everyone["n"],
        everyone["promoters"] - everyone["detractors"],
        part["detractors"].reindex(everyone.index, fill_value=0.0),
    )
    assert (row["impact"], row["impact_low"], row["impact_high"]) == pytest.approx(
        (impact.points, impact.low, impact.high), rel=1e-9
    )


def test_theme_trend_and_segments_equal_the_clustered_functions_on_per_customer_sums(duckdb_demo):
    """A month's share of a theme and a plan's NPS with vs without it, added up in the database, are
    relq.measures.clustered's figures on that month's (plan's) aligned per-customer arrays."""
    from relq.analyses.themes import _commented_query, _frame, _segment_query, _theme_query
    from relq.measures import clustered
    from relq.store.filters import customer_dimension

    flt = SegmentFilter()
    month = sa.func.date_trunc("month", schema.survey_responses.c.submitted_at).label("month")
    plan = customer_dimension("plan").label("segment")
    with duckdb_demo.connect() as conn:
        trend = themes.theme_trend(conn, flt, ("Billing",))
        every = _frame(conn, _commented_query(conn, flt, by=(month,)))
        part = _frame(conn, _theme_query(conn, flt, themes=["Billing"], by=(month,)))
        segments = themes.theme_segments(conn, flt, "Billing", "plan").set_index("segment")
        in_plan = _frame(conn, _segment_query(flt, plan, None))
        plan_part = _frame(conn, _segment_query(flt, plan, "Billing"))
    busiest = trend.loc[trend["responses"].idxmax()]
    month_all = every[every["month"] == busiest["month"]].set_index("cluster")
    mentions = part[part["month"] == busiest["month"]].set_index("cluster")["n"]
    share = clustered.csat_interval_clustered(
        month_all["n"], mentions.reindex(month_all.index, fill_value=0.0), month_all["n"]
    )
    assert busiest["responses"] == mentions.sum() and busiest["customers"] == len(mentions)
    assert (busiest["share"], busiest["low"], busiest["high"]) == pytest.approx(
        (share.score / 100, share.low / 100, share.high / 100), rel=1e-9
    )
    name = segments["responses"].idxmax()
    seg_all = in_plan[in_plan["segment"] == name].drop(columns="segment").set_index("cluster")
    seg_part = plan_part[plan_part["segment"] == name].drop(columns=["segment", "theme"]).set_index("cluster")
    seg_part = seg_part.reindex(seg_all.index, fill_value=0.0)
    rest = seg_all - seg_part
    row = segments.loc[name]
    for side, sums in (("with", seg_part), ("without", rest)):
        nps = clustered.nps_interval_clustered(
            sums["nps_w"], sums["promoters"], sums["detractors"], sums["nps_w"]
        )
        assert row[f"nps_{side}"] == pytest.approx(nps.score, rel=1e-9)
    delta = _nps_with_vs_without(seg_part, rest)
    assert (row["nps_delta"], row["nps_delta_low"], row["nps_delta_high"], row["nps_p"]) == pytest.approx(
        (delta.delta, delta.low, delta.high, delta.p_value), rel=1e-9
    )
    assert row["share"] == pytest.approx(seg_part["n"].sum() / seg_all["n"].sum(), rel=1e-12)


def _theme_figures(conn, flt: SegmentFilter) -> tuple:
    frames = (themes.theme_table(conn, flt).drop(columns="terms"), themes.theme_trend(conn, flt))
    return themes.theme_overview(conn, flt, pending=False), *frames


def _from_the_responses(conn, flt: SegmentFilter) -> tuple:
    """The figures with the stored month sums set aside (in a transaction rolled back)."""
    built = schema.derived_versions
    conn.rollback()  # end what the reads before began
    with conn.begin() as tx:
        conn.execute(
            built.delete().where(
                built.c.name.in_(["theme_sums", "segment themes", "response_sums", "customer_totals"])
            )
        )
        figures = _theme_figures(conn, flt)
        tx.rollback()
    return figures


def _statements(engine, run) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


@pytest.mark.parametrize(
    ("flt", "cells"),
    [
        (SegmentFilter(), True),
        (SegmentFilter(customer=(("region", ("EMEA",)),)), True),
        (SegmentFilter(customer=(("region", ("EMEA", "APAC")), ("plan", ("Growth",)))), True),
        (
            SegmentFilter(since=date(2025, 1, 1), until=date(2025, 6, 30), exclude_flags=("flag_speeder",)),
            False,
        ),
        (SegmentFilter(quadrant="x_high_y_low"), False),
        (SegmentFilter(customer=(("owner", ("Sophie Laurent",)),)), False),
    ],
    ids=["company", "region", "regions-and-plan", "half-year-without-speeders", "quadrant", "owner"],
)
def test_theme_figures_from_the_stored_month_sums_equal_those_read_from_the_responses(
    duckdb_demo, flt, cells
):
    """The page reads the themes' stored month sums for a view they fit — the sums per segment cell
    for a view of the whole history choosing segments of the cells' dimensions only; the raw grouped
    reads of the responses (which the statsmodels tests above check) give the same overview, table
    and trend to 1e-12 — and the stored path is the one taken."""
    themes.save_theme_cells(duckdb_demo)  # as the dashboard does after loading the demo
    with duckdb_demo.connect() as conn:
        stored_reads = _statements(duckdb_demo, lambda: _theme_figures(conn, flt))
        stored, raw = _theme_figures(conn, flt), _from_the_responses(conn, flt)
    assert any("FROM theme_sums" in s for s in stored_reads)  # the trend's months at least
    assert any("FROM segment_themes" in s for s in stored_reads) == cells
    assert not any("JOIN comment_themes" in s for s in stored_reads)
    assert stored[0] == raw[0]
    assert stored[0]["comments"] > 0 and len(stored[1]) >= 10
    for got, want in zip(stored[1:], raw[1:], strict=True):
        pd.testing.assert_frame_equal(got, want, rtol=1e-12, check_dtype=False)


def test_a_view_the_stored_theme_sums_do_not_fit_reads_the_responses(duckdb_demo):
    """Mid-month dates and a chosen theme are read from the responses, not the month sums."""
    for flt in (
        SegmentFilter(since=date(2025, 1, 10), until=date(2025, 6, 30)),
        SegmentFilter(themes=("Billing",)),
    ):
        with duckdb_demo.connect() as conn:
            reads = _statements(duckdb_demo, lambda flt=flt, conn=conn: themes.theme_table(conn, flt))
        assert not any("theme_sums" in s for s in reads), flt
        assert any("JOIN comment_themes" in s for s in reads), flt


def test_theme_share_is_a_wilson_interval_on_the_effective_n(demo_table):
    from statsmodels.stats.proportion import proportion_confint

    row = demo_table.set_index("theme").loc["Price"]
    low, high = proportion_confint(row["share"] * row["share_n_eff"], row["share_n_eff"], method="wilson")
    assert (row["share_low"], row["share_high"]) == (
        pytest.approx(low, rel=1e-9),
        pytest.approx(high, rel=1e-9),
    )
    assert row["share"] == pytest.approx(row["responses"] / row["comments"])


def test_benjamini_hochberg_runs_across_the_themes_shown(demo_table):
    from statsmodels.stats.multitest import multipletests

    tested = demo_table[~demo_table["small"]]
    expected = multipletests(tested["nps_p"], method="fdr_bh")[1]
    np.testing.assert_allclose(tested["nps_q"], expected, rtol=1e-12)


@pytest.mark.parametrize(
    "flt", [SegmentFilter(), SegmentFilter(customer=(("region", ("EMEA",)),))], ids=["company", "region"]
)
def test_duckdb_and_postgresql_give_the_same_themes_and_figures(demo_db_url, demo_postgres_url, flt):
    """Both engines keep the sums per segment cell and read them; the table agrees to 1e-9."""
    from relq.store import themes as stored

    tables = {}
    for name, url in (("duckdb", demo_db_url), ("postgres", demo_postgres_url)):
        engine = store.get_engine(url) if name == "duckdb" else sa.create_engine(url)
        assert themes.save_theme_cells(engine), name  # as the dashboard does after loading the demo
        with engine.connect() as conn:
            assert stored.theme_cells_ready(conn), name
            tables[name] = themes.theme_table(conn, flt).set_index("theme").sort_index()
        engine.dispose()
    duck, pg = tables["duckdb"], tables["postgres"]
    assert duck.index.tolist() == pg.index.tolist()
    assert (duck["source"] == "discovered").sum() == 12
    numbers = [c for c in duck.columns if pd.api.types.is_numeric_dtype(duck[c]) and c != "rank"]
    pd.testing.assert_frame_equal(duck[numbers], pg[numbers], rtol=1e-9, check_dtype=False)


def test_the_sums_per_segment_cell_are_not_read_once_the_month_sums_are_rebuilt_without_them(duckdb_demo):
    """The cells are made from the themes' month sums: a rebuild of those alone (a change of the
    themes that did not make the cells again) leaves the page reading the month sums, with the same
    figures; the rebuild after a change of the data makes them again."""
    from relq.analyses.churn_risk import rebuild_stored_tables
    from relq.store import themes as stored

    region = SegmentFilter(customer=(("region", ("EMEA",)),))
    assert themes.save_theme_cells(duckdb_demo)
    with duckdb_demo.connect() as conn:
        before = themes.theme_table(conn, region).drop(columns="terms")
    with duckdb_demo.begin() as conn:
        stored.rebuild_theme_sums(conn)
    with duckdb_demo.connect() as conn:
        assert stored.theme_sums_ready(conn) and not stored.theme_cells_ready(conn)
        reads = _statements(duckdb_demo, lambda: themes.theme_table(conn, region))
        after = themes.theme_table(conn, region).drop(columns="terms")
    assert not any("segment_themes" in s for s in reads) and any("FROM theme_sums" in s for s in reads)
    pd.testing.assert_frame_equal(after, before, rtol=1e-12, check_dtype=False)
    rebuild_stored_tables(duckdb_demo)
    with duckdb_demo.connect() as conn:
        assert stored.theme_cells_ready(conn)


def test_a_refresh_that_leaves_the_month_sums_to_the_rebuild_is_read_from_the_rows_until_then(duckdb_engine):
    """The Upload page's refresh (``sums=False``: every stored table is rebuilt in the background
    right after) forgets the themes' month sums instead of rebuilding them: the pages read the rows,
    the new comments counted, until the rebuild makes the sums again with the same figures."""
    from relq.analyses.churn_risk import rebuild_stored_tables
    from relq.store import themes as stored

    first = pd.DataFrame(
        {
            "response_id": ["R1", "R2"],
            "submitted_at": pd.to_datetime(["2025-01-01", "2025-01-02"]),
            "nps": [3, 9],
            "comment": ["The dashboards are slow", "Great support team"],
        }
    )
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, first)
    tagging.refresh_themes(duckdb_engine)
    tagging.save_rule(duckdb_engine, tagging.ThemeRule("Reporting", ("dashboard*",)), user="ana@example.com")
    with duckdb_engine.connect() as conn:
        assert stored.theme_sums_ready(conn)
    later = first.assign(
        response_id=["R3", "R4"], comment=["Dashboard exports fail", "Slow dashboards again"]
    )
    with duckdb_engine.begin() as conn:
        store.bulk_insert(conn, schema.survey_responses, later)
        store.note_data_change(conn, "import")
    summary = tagging.refresh_themes(duckdb_engine, sums=False)
    assert summary.comments_read == 2
    with duckdb_engine.connect() as conn:
        assert not stored.theme_sums_ready(conn) and not stored.theme_cells_ready(conn)
        reads = _statements(duckdb_engine, lambda: themes.theme_table(conn, SegmentFilter()))
        before = _theme_figures(conn, SegmentFilter())
    assert not any("FROM theme_sums" in s for s in reads)
    assert before[1].set_index("theme").loc["Reporting", "responses"] == 3  # R1, R3, R4
    rebuild_stored_tables(duckdb_engine)
    with duckdb_engine.connect() as conn:
        assert stored.theme_sums_ready(conn) and stored.theme_cells_ready(conn)
        after = _theme_figures(conn, SegmentFilter())
    assert after[0] == before[0]
    pd.testing.assert_frame_equal(after[1], before[1], rtol=1e-12, check_dtype=False)
    pd.testing.assert_frame_equal(after[2], before[2], rtol=1e-12, check_dtype=False)


# ── the filter, the import hook ──────────────────────────────────────────────────────────────


def test_a_theme_is_a_filter_that_round_trips_through_the_url(duckdb_demo):
    flt = SegmentFilter(themes=("Billing", "Price"))
    assert SegmentFilter.from_query_params(flt.to_query_params()) == flt
    assert flt.to_query_params()["theme"] == "Billing|Price"
    T = schema.comment_themes
    with duckdb_demo.connect() as conn:
        tagged = conn.execute(
            sa.select(sa.func.count(sa.distinct(T.c.response_id))).where(T.c.theme.in_(["Billing", "Price"]))
        ).scalar_one()
        assert metrics.headline(conn, flt).responses == tagged
        billing = themes.theme_table(conn, SegmentFilter(themes=("Billing",))).set_index("theme")
    assert billing.loc["Billing", "share"] == 1.0  # within the filter every comment mentions it


def test_an_import_reads_its_comments_and_undo_removes_their_themes(engine, table_counts):
    csv = (
        "response_id,submitted_at,nps,comment\n"
        "S1,2025-02-01,2,Die Rechnung ist schon wieder falsch\n"
        "S2,2025-02-02,10,Great SUPPORT — the invoice is always right\n"
        "S3,2025-02-03,5,Il servizio non è stato molto buono\n"
        "S4,2025-02-04,8,\n"
    ).encode()
    before = table_counts(engine)
    result = import_file(engine, csv, file_name="comments.csv", kind="survey")
    assert any(m.startswith("Themes refreshed: 3 new comments read") for m in result.messages), (
        result.messages
    )
    with engine.connect() as conn:
        got = conn.execute(
            sa.select(schema.comment_themes.c.response_id, schema.comment_themes.c.theme)
        ).all()
        facts = dict(
            conn.execute(sa.select(schema.comment_facts.c.response_id, schema.comment_facts.c.language)).all()
        )
    assert {(r, t) for r, t in got} >= {("S1", "Billing"), ("S2", "Support"), ("S2", "Billing")}
    assert facts == {"S1": "de", "S2": "en", "S3": "it"}  # S3: Italian, not themed
    assert not [r for r, _ in got if r == "S3"]
    again = import_file(engine, csv, file_name="comments.csv", kind="survey")
    assert again.rows_imported == 0
    store.undo_import(engine, again.import_id)
    store.undo_import(engine, result.import_id)
    assert table_counts(engine) == before  # comment_facts and comment_themes included


# ── the command line and the page ────────────────────────────────────────────────────────────


def test_themes_json_gives_the_contract_shape_on_the_demo(demo_env, capsys):
    from relq.cli import main

    assert main(["themes", "--json", "--since", "2024-01-01"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["themes"]
    for item in report["themes"]:
        assert {"name", "source", "terms", "responses", "share", "ci", "nps_delta"} <= set(item)
        assert item["source"] in ("rule", "discovered")
        assert all(isinstance(t, str) for t in item["terms"])
        assert isinstance(item["responses"], int) and len(item["ci"]) == 2
        assert {"delta", "ci", "p", "q"} <= set(item["nps_delta"])
        if item["responses"]:
            assert item["ci"][0] <= item["share"] <= item["ci"][1]
    assert main(["themes", "--json", "--k", "1"]) == 2  # refused with one line


def _themes_page(at: AppTest) -> AppTest:
    at.switch_page("pages/themes.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_page_shows_themes_ranked_lists_comments_and_filters(demo_env, downloads):
    at = _themes_page(AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run())
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert table["rank"].dropna().tolist() == sorted(table["rank"].dropna().tolist())
    assert "comment-themes.csv" in downloads
    assert not any("matched" in d.value.columns for d in at.dataframe)  # "One theme" computes once opened
    at.session_state["themes_tab"] = "One theme"
    at.run()
    comments = next(d.value for d in at.dataframe if "matched" in d.value.columns)
    assert comments["comment"].str.contains("«").all()
    at.multiselect(key="flt_themes").select("Billing").run()
    assert not at.exception
    assert at.query_params["theme"] == ["Billing"] or at.query_params["theme"] == "Billing"


def test_executives_see_theme_aggregates_but_never_a_comment(demo_env, monkeypatch, tmp_path):
    from tests.test_auth import EMAIL, ROLES_TOML, open_url_path, signed_in

    path = tmp_path / "roles.toml"
    path.write_text(ROLES_TOML, encoding="utf-8")
    monkeypatch.setenv("RELQ_ROLES", str(path))
    at = open_url_path(signed_in(EMAIL["executive"]).run(), "themes")
    assert not at.exception, [e.value for e in at.exception]
    frames = [d.value for d in at.dataframe]  # the ranked table
    at.session_state["themes_tab"] = "One theme"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.metric
    frames += [d.value for d in at.dataframe]
    assert not any("matched" in f.columns or "comment" in f.columns for f in frames)
    assert all((f["customers"] >= 5).all() for f in frames if "customers" in f.columns)
    assert any("Comments are hidden for your role" in i.value for i in at.info)
    assert not any(b.label in ("Save the rule", "Discover again") for b in at.button)


def test_a_rule_saved_on_the_page_is_read_from_the_sums_per_segment_cell_again(
    tmp_path, demo_company, monkeypatch
):
    """Saving a rule rebuilds the themes' month sums in its transaction (forgetting the sums per
    segment cell made from the older ones); the page then records a change of the data, whose
    rebuild of the stored tables in the background makes the cells again, so the table of the view
    counts the new rule from them, with the figures the responses give."""
    from relq.ingest.demo import load_demo
    from relq.store import themes as stored

    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    engine = store.get_engine(url)
    load_demo(engine, demo_company)
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = _themes_page(AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run())
    at.text_input(key="themes_edit_name_new").input("Dashboards")
    at.text_area(key="themes_edit_phrases_new").input("dashboard*\nexport*")
    at.button(key="themes_save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Saved Dashboards" in s.value for s in at.success), [e.value for e in at.error]
    for thread in [t for t in threading.enumerate() if t.name == "relq-churn-scores"]:
        thread.join(timeout=300)  # the rebuild of the stored tables and today's scores
    region = SegmentFilter(customer=(("region", ("EMEA",)),))
    with engine.connect() as conn:
        assert stored.theme_cells_ready(conn)
        reads = _statements(engine, lambda: themes.theme_table(conn, region))
        table = themes.theme_table(conn, region).drop(columns="terms")
        raw = _from_the_responses(conn, region)[1]
    assert any("FROM segment_themes" in s for s in reads)
    assert table.set_index("theme").loc["Dashboards", "responses"] > 0
    pd.testing.assert_frame_equal(table, raw, rtol=1e-12, check_dtype=False)
    engine.dispose()

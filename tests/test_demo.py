"""The demo company (relq.ingest.demo.generate_demo): deterministic, schema-shaped and believable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relq.core.instrument import load_instrument
from relq.ingest.demo import DemoCompany, generate_demo
from relq.ingest.quality import QUALITY_FLAGS
from relq.store.schema import CUSTOMER_FIELDS, PILLARS, RESPONSE_FIELDS, TICKET_FIELDS, TRANSACTION_FIELDS

SEED = 7
CUSTOMERS = 1500
TABLES = ("customers", "transactions", "tickets", "responses", "answers")
INSTRUMENT = load_instrument()


@pytest.fixture(scope="module")
def demo() -> DemoCompany:
    print(f"generate_demo(customers={CUSTOMERS}, seed={SEED})")
    return generate_demo(customers=CUSTOMERS, seed=SEED)


def wide_answers(demo: DemoCompany) -> pd.DataFrame:
    return demo.answers.pivot(index="response_id", columns="item_id", values="value")


def test_same_seed_gives_identical_frames(demo):
    again = generate_demo(customers=CUSTOMERS, seed=SEED)
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(demo, table), getattr(again, table), obj=table)


def test_another_seed_gives_another_company(demo):
    other = generate_demo(customers=CUSTOMERS, seed=SEED + 1)
    assert not demo.customers["acquired_at"].equals(other.customers["acquired_at"])
    assert (
        not demo.responses["nps"].reset_index(drop=True).equals(other.responses["nps"].reset_index(drop=True))
    )


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("customers", list(CUSTOMER_FIELDS)),
        ("transactions", list(TRANSACTION_FIELDS)),
        ("tickets", list(TICKET_FIELDS)),
        ("responses", [*RESPONSE_FIELDS, *PILLARS, "rq", *QUALITY_FLAGS]),
        ("answers", ["response_id", "item_id", "value"]),
    ],
)
def test_columns_match_the_schema(demo, table, columns):
    assert list(getattr(demo, table).columns) == columns


def test_keys_are_unique_and_references_resolve(demo):
    assert demo.customers["customer_id"].is_unique
    assert demo.customers["email"].is_unique
    assert demo.transactions["transaction_id"].is_unique
    assert demo.tickets["ticket_id"].is_unique
    assert demo.responses["response_id"].is_unique
    known = set(demo.customers["customer_id"])
    assert set(demo.transactions["customer_id"]) <= known
    assert set(demo.tickets["customer_id"]) <= known
    assert set(demo.responses["customer_id"].dropna()) <= known
    assert set(demo.answers["response_id"]) <= set(demo.responses["response_id"])
    assert demo.customers["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert demo.responses["response_id"].str.fullmatch(r"R\d{7}").all()


def test_dates_are_datetimes_and_date_valued_where_the_schema_says_date(demo):
    customers = demo.customers
    for column in ("acquired_at", "churned_at"):
        assert customers[column].dtype == "datetime64[ns]"
        assert (customers[column].dropna() == customers[column].dropna().dt.normalize()).all()
    for frame, column in [
        (demo.transactions, "occurred_at"),
        (demo.tickets, "opened_at"),
        (demo.tickets, "resolved_at"),
        (demo.responses, "submitted_at"),
    ]:
        assert frame[column].dtype == "datetime64[ns]"
        assert frame[column].max() <= pd.Timestamp("2026-10-31 23:59:59")


def test_acquisition_spans_36_monthly_cohorts_and_grows(demo):
    cohorts = demo.customers["acquired_at"].dt.to_period("M").value_counts().sort_index()
    assert len(cohorts) == 36
    assert str(cohorts.index[0]) == "2023-11" and str(cohorts.index[-1]) == "2026-10"
    assert cohorts.iloc[-6:].mean() > 1.8 * cohorts.iloc[:6].mean()


def test_no_purchase_after_churn_or_before_acquisition(demo):
    joined = demo.transactions.merge(
        demo.customers[["customer_id", "acquired_at", "churned_at"]], on="customer_id"
    )
    assert (joined["occurred_at"] >= joined["acquired_at"]).all()
    churned = joined.dropna(subset=["churned_at"])
    assert (churned["occurred_at"] < churned["churned_at"]).all()
    assert demo.customers["customer_id"].isin(demo.transactions["customer_id"]).all()  # a first purchase each


def test_business_volumes_are_believable(demo):
    customers = len(demo.customers)
    assert 0.25 <= demo.customers["churned_at"].notna().mean() <= 0.35
    assert 18 <= len(demo.transactions) / customers <= 30  # ≈5M purchases on the 200k benchmark tier
    assert 2.0 <= len(demo.tickets) / customers <= 3.0
    assert set(demo.customers["plan"]) == {"Starter", "Growth", "Enterprise"}
    medians = demo.customers.groupby("plan")["annual_value"].median()
    assert medians["Starter"] < medians["Growth"] < medians["Enterprise"]


def test_open_tickets_have_no_resolution(demo):
    tickets = demo.tickets
    assert set(tickets["status"]) == {"solved", "open", "pending"}
    assert tickets.loc[tickets["status"] != "solved", "resolved_at"].isna().all()
    solved = tickets[tickets["status"] == "solved"]
    assert (solved["opened_at"] < solved["first_response_at"]).all()
    assert (solved["first_response_at"] < solved["resolved_at"]).all()


def test_customers_with_high_survey_trust_churn_less(demo):
    trust = demo.responses.dropna(subset=["customer_id"]).groupby("customer_id")["trust"].mean()
    tercile = pd.qcut(trust, 3, labels=["low", "mid", "high"])
    churned = demo.customers.set_index("customer_id")["churned_at"].notna().reindex(trust.index)
    share = churned.groupby(tercile, observed=True).mean()
    assert share["high"] < share["mid"] < share["low"]


def test_churn_hazard_falls_with_trust_in_a_cox_model(demo):
    import lifelines  # pinned in requirements.txt

    customers = demo.customers.set_index("customer_id")
    trust = demo.responses.dropna(subset=["customer_id", "trust"]).groupby("customer_id")["trust"].mean()
    end = pd.Timestamp("2026-11-01")
    frame = pd.DataFrame(
        {
            "days": (customers["churned_at"].fillna(end) - customers["acquired_at"]).dt.days,
            "churned": customers["churned_at"].notna().astype(int),
        }
    ).join(((trust - trust.mean()) / trust.std()).rename("trust"), how="inner")
    model = lifelines.CoxPHFitter().fit(frame, duration_col="days", event_col="churned")
    assert model.hazard_ratios_["trust"] < 0.8
    assert model.summary.loc["trust", "p"] < 0.001


def test_answers_are_on_the_scale_and_the_demo_has_no_out_of_range(demo):
    values = demo.answers["value"]
    assert values.between(INSTRUMENT.scale_min, INSTRUMENT.scale_max).all()
    assert (values == values.round()).all()
    responses = demo.responses
    assert responses["nps"].between(0, 10).all()
    assert responses["csat"].between(1, 5).all()
    assert responses["ces"].between(1, 7).all()
    assert not responses["flag_out_of_range"].any()
    skipped = 1 - len(demo.answers) / (len(responses) * len(INSTRUMENT.items))
    assert 0.015 <= skipped <= 0.045


@pytest.mark.parametrize(
    ("flag", "low", "high"),
    [("flag_duplicate", 0.005, 0.02), ("flag_speeder", 0.01, 0.035), ("flag_straightliner", 0.008, 0.025)],
)
def test_flags_come_in_roughly_the_intended_shares(demo, flag, low, high):
    assert low <= demo.responses[flag].mean() <= high


def test_unmatched_responses_carry_an_email_no_customer_has(demo):
    unmatched = demo.responses[demo.responses["customer_id"].isna()]
    assert 0.004 <= len(unmatched) / len(demo.responses) <= 0.02
    assert unmatched["email"].notna().all()
    assert not unmatched["email"].isin(demo.customers["email"]).any()


def test_pillar_indices_are_recomputable_from_the_stored_answers(demo):
    from relq.core.instrument import pillar_indices

    wide = wide_answers(demo).reindex(demo.responses["response_id"])
    again = pillar_indices(wide, INSTRUMENT).reset_index(drop=True)
    pd.testing.assert_frame_equal(again, demo.responses[[*PILLARS, "rq"]], check_names=False)


def test_reverse_items_correlate_negatively_with_their_pillar(demo):
    clean = ~demo.responses[list(QUALITY_FLAGS)].any(axis=1)
    wide = wide_answers(demo).reindex(demo.responses.loc[clean, "response_id"])
    for pillar in PILLARS:
        items = INSTRUMENT.items_of(pillar)
        straight = wide[[item.id for item in items if not item.reverse]].mean(axis=1)
        for item in (item for item in items if item.reverse):
            assert wide[item.id].corr(straight) < -0.3, item.id
        # Reverse-coded, the pillar holds together: Cronbach's alpha is respectable.
        block = wide[[item.id for item in items]].dropna().copy()
        for item in items:
            if item.reverse:
                block[item.id] = INSTRUMENT.scale_min + INSTRUMENT.scale_max - block[item.id]
        k = len(items)
        alpha = k / (k - 1) * (1 - block.var().sum() / block.sum(axis=1).var())
        assert alpha > 0.7, (pillar, alpha)


def test_survey_scores_are_believable(demo):
    responses = demo.responses
    nps = 100 * ((responses["nps"] >= 9).mean() - (responses["nps"] <= 6).mean())
    assert 15 <= nps <= 40
    assert 0.25 <= responses["comment"].notna().mean() <= 0.35
    assert responses["wave"].str.fullmatch(r"\d{4}-Q[1-4]").all()
    assert 150 <= responses["duration"].median() <= 330
    # Satisfaction drives NPS; slow support makes effort worse.
    assert responses["satisfaction"].corr(responses["nps"]) > 0.4
    assert responses["satisfaction"].corr(responses["ces"]) < -0.2


def test_pillar_correlations_match_the_latent_design(demo):
    clean = demo.responses.loc[~demo.responses[list(QUALITY_FLAGS)].any(axis=1), list(PILLARS)]
    corr = clean.corr()
    for a, b in [("trust", "commitment"), ("trust", "satisfaction"), ("commitment", "satisfaction")]:
        assert 0.35 <= corr.loc[a, b] <= 0.8, (a, b, corr.loc[a, b])


def test_rejects_nonsense_arguments():
    with pytest.raises(ValueError, match="customers"):
        generate_demo(customers=0)
    with pytest.raises(ValueError, match="months"):
        generate_demo(customers=10, months=1)


def test_response_rate_is_about_forty_percent_of_active_contacts(demo):
    matched = demo.responses.dropna(subset=["customer_id"])
    matched = matched[~matched["flag_duplicate"]]
    per_wave = matched.groupby("wave").size()
    # 2023-Q4 is sent a week after the first customers arrive: too new to be asked.
    assert list(per_wave.index) == [f"{year}-Q{q}" for year in (2024, 2025, 2026) for q in (1, 2, 3, 4)][:11]
    people = demo.contacts.merge(
        demo.customers[["customer_id", "acquired_at", "churned_at"]], on="customer_id"
    )
    sends = pd.to_datetime([f"{w[:4]}-{3 * int(w[-1]) - 1:02d}-08" for w in per_wave.index])
    active = np.array(
        [
            (
                (people["acquired_at"] <= send - pd.Timedelta(days=14))
                & (people["churned_at"].isna() | (people["churned_at"] > send))
            ).sum()
            for send in sends
        ]
    )
    rate = per_wave.sum() / active.sum()
    assert 0.35 <= rate <= 0.45, rate


def test_accounts_have_several_contacts_at_their_own_domain_more_on_bigger_plans(demo):
    contacts = demo.contacts
    assert list(contacts.columns) == ["customer_id", "name", "email"]
    assert contacts["email"].is_unique
    assert set(demo.customers["email"]) <= set(contacts["email"])  # the primary contact
    per_account = contacts.groupby("customer_id").size()
    assert per_account.min() >= 1
    by_plan = per_account.groupby(demo.customers.set_index("customer_id")["plan"]).mean()
    assert 1.8 <= by_plan["Starter"] < by_plan["Growth"] < by_plan["Enterprise"] <= 10
    domain = contacts["email"].str.split("@").str[1]
    primary_domain = demo.customers.set_index("customer_id")["email"].str.split("@").str[1]
    assert (domain.to_numpy() == primary_domain.reindex(contacts["customer_id"]).to_numpy()).all()
    # Every matched response comes from one of its account's contacts.
    matched = demo.responses.dropna(subset=["customer_id"])
    pairs = matched[["customer_id", "email"]].merge(contacts, how="left", indicator=True)
    assert (pairs["_merge"] == "both").all()


def test_colleagues_answering_the_same_wave_are_not_flagged_as_duplicates(demo):
    matched = demo.responses.dropna(subset=["customer_id"])
    colleagues = matched.groupby(["customer_id", "wave"])["email"].nunique()
    assert (colleagues > 1).mean() > 0.2  # several people per account answer the same wave
    clean = matched[~matched["flag_duplicate"]]
    assert not clean.duplicated(["email", "wave"]).any()
    assert clean.duplicated(["customer_id", "wave"]).any()


def test_a_demo_streamed_in_chunks_has_unique_ids_and_every_chunk_stored(tmp_path):
    """The huge tier's path on a small company: three chunks give distinct ids everywhere, every
    answer belongs to a stored response, and one chunk is exactly generate_demo's company."""
    import sqlalchemy as sa

    from relq import store
    from relq.ingest.demo import build_demo_streamed
    from relq.store import schema

    engine = store.get_engine(f"duckdb:///{tmp_path / 'streamed.duckdb'}")
    counts = build_demo_streamed(engine, customers=700, seed=5, chunk=300)
    with engine.connect() as conn:

        def scalar(q):
            return conn.execute(q).scalar_one()

        for table, key in (
            (schema.customers, "customer_id"),
            (schema.transactions, "transaction_id"),
            (schema.tickets, "ticket_id"),
            (schema.survey_responses, "response_id"),
        ):
            rows = scalar(sa.select(sa.func.count()).select_from(table))
            distinct = scalar(sa.select(sa.func.count(sa.distinct(table.c[key]))))
            assert rows == distinct > 0, table.name
        assert scalar(sa.select(sa.func.count()).select_from(schema.customers)) == counts.customers == 700
        orphans = scalar(
            sa.select(sa.func.count())
            .select_from(schema.survey_answers)
            .where(~schema.survey_answers.c.response_id.in_(sa.select(schema.survey_responses.c.response_id)))
        )
        assert orphans == 0
        stored = scalar(sa.select(schema.imports.c.rows_imported).where(schema.imports.c.is_demo))
        assert stored == counts.responses
    single = build_demo_streamed(engine, customers=300, seed=5, chunk=300)
    assert single.responses == len(generate_demo(customers=300, seed=5).responses)

"""Data-quality flags on small hand-written batches (relq.ingest.quality.flag_responses)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relq.core.instrument import load_instrument
from relq.ingest import quality
from relq.ingest.quality import QUALITY_FLAGS, flag_responses

INSTRUMENT = load_instrument()
ITEMS = INSTRUMENT.item_ids
# An attentive answer: high on normal items, low on the reverse-keyed ones.
ATTENTIVE = [2.0 if INSTRUMENT.item(item).reverse else 6.0 for item in ITEMS]


def batch(rows: list[dict], answers: list[list[float]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    defaults = {"customer_id": None, "email": None, "duration": 240.0, "nps": 9, "csat": 5, "ces": 2}
    responses = pd.DataFrame([{**defaults, **row} for row in rows])
    responses["submitted_at"] = pd.to_datetime(responses["submitted_at"])
    responses.index = pd.Index([f"R{n}" for n in range(len(rows))], name="response_id")
    answers = answers if answers is not None else [ATTENTIVE] * len(rows)
    wide = pd.DataFrame(answers, columns=ITEMS, index=responses.index)
    return responses, wide


def expected(index: pd.Index, **columns: list[bool]) -> pd.DataFrame:
    frame = pd.DataFrame({flag: [False] * len(index) for flag in QUALITY_FLAGS}, index=index)
    for name, values in columns.items():
        frame[name] = values
    return frame


def test_same_customer_resubmitting_identical_answers_in_a_wave_flags_every_later_copy():
    responses, wide = batch(
        [
            {"customer_id": "C1", "submitted_at": "2025-02-10 10:05"},
            {"customer_id": "C1", "submitted_at": "2025-02-10 10:00"},  # the first, though listed second
            {"customer_id": "C1", "submitted_at": "2025-03-20 10:00"},  # same quarter, 38 days later
            {"customer_id": "C2", "submitted_at": "2025-02-10 10:00"},  # another customer, same answers
            {"customer_id": "C1", "submitted_at": "2025-05-10 10:00"},  # next quarter
        ]
    )
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(
        result, expected(responses.index, flag_duplicate=[True, False, True, False, False])
    )


def test_same_customer_within_seven_days_is_a_duplicate_even_with_other_answers():
    changed = list(ATTENTIVE)
    changed[0] = 3.0
    responses, wide = batch(
        [
            {"customer_id": "C1", "submitted_at": "2025-03-28 09:00"},
            {"customer_id": "C1", "submitted_at": "2025-04-03 09:00", "nps": 4},  # next quarter, 6 days on
            {"customer_id": "C1", "submitted_at": "2025-04-20 09:00"},  # 17 days on, new quarter: kept
        ],
        [ATTENTIVE, changed, changed],
    )
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(result, expected(responses.index, flag_duplicate=[False, True, False]))


def test_unmatched_responses_are_matched_on_email_case_insensitively_and_other_scores_differ():
    responses, wide = batch(
        [
            {"email": "Ana.Lopez@acme.io", "submitted_at": "2025-01-05 09:00"},
            {"email": "ana.lopez@acme.io ", "submitted_at": "2025-03-05 09:00"},  # same answers and scores
            {"email": "ana.lopez@acme.io", "submitted_at": "2025-03-25 09:00", "csat": 4},  # csat differs
            {"submitted_at": "2025-03-05 09:00"},  # nobody: never a duplicate
            {"submitted_at": "2025-03-05 09:00"},
        ]
    )
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(
        result, expected(responses.index, flag_duplicate=[False, True, False, False, False])
    )


def test_colleagues_at_one_customer_are_different_respondents_and_email_decides_who_answered():
    responses, wide = batch(
        [
            {"customer_id": "C1", "email": "ana@acme.io", "submitted_at": "2025-02-10 10:00"},
            {"customer_id": "C1", "email": "ben@acme.io", "submitted_at": "2025-02-10 11:00"},  # colleague
            {"customer_id": "C1", "email": "ANA@acme.io", "submitted_at": "2025-02-12 09:00", "nps": 7},
            {"customer_id": "C1", "submitted_at": "2025-02-20 09:00"},  # no email: the customer id decides
            {"customer_id": "C1", "submitted_at": "2025-02-22 09:00", "nps": 6},
        ]
    )
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(
        result, expected(responses.index, flag_duplicate=[False, False, True, False, True])
    )


def test_wave_column_decides_the_group_when_given():
    responses, wide = batch(
        [
            {"customer_id": "C1", "submitted_at": "2025-03-01 09:00", "wave": "2025-Q1"},
            {"customer_id": "C1", "submitted_at": "2025-04-15 09:00", "wave": "2025-Q1"},  # late Q1 answer
            {"customer_id": "C1", "submitted_at": "2025-06-15 09:00", "wave": "2025-Q2"},
        ]
    )
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(result, expected(responses.index, flag_duplicate=[False, True, False]))


def test_speeders_are_under_half_the_batch_median_and_missing_duration_is_not():
    responses, wide = batch(
        [
            {"customer_id": f"C{n}", "submitted_at": "2025-01-05", "duration": duration}
            for n, duration in enumerate([240.0, 240.0, 260.0, 119.0, 120.0, np.nan])
        ]
    )
    result = flag_responses(responses, wide, INSTRUMENT)  # median 240 → under 120 is a speeder
    pd.testing.assert_frame_equal(
        result, expected(responses.index, flag_speeder=[False, False, False, True, False, False])
    )


def test_straightliners_need_six_answered_items_all_equal():
    nan = np.nan
    five_answered = [5.0] * 5 + [nan] * (len(ITEMS) - 5)
    six_answered = [5.0] * 6 + [nan] * (len(ITEMS) - 6)
    all_sevens = [7.0] * len(ITEMS)
    responses, wide = batch(
        [{"customer_id": f"C{n}", "submitted_at": "2025-01-05"} for n in range(5)],
        [ATTENTIVE, five_answered, six_answered, all_sevens, [nan] * len(ITEMS)],
    )
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(
        result, expected(responses.index, flag_straightliner=[False, False, True, True, False])
    )


@pytest.mark.parametrize(
    ("change", "flagged"),
    [
        ({}, False),
        ({"nps": 11}, True),
        ({"nps": -1}, True),
        ({"nps": 0}, False),
        ({"csat": 0}, True),
        ({"csat": 6}, True),
        ({"ces": 8}, True),
        ({"ces": 7}, False),
        ({"nps": np.nan, "csat": np.nan, "ces": np.nan}, False),
        ({"item": 0.0}, True),
        ({"item": 8.0}, True),
        ({"item": 7.0}, False),
    ],
)
def test_out_of_range_answers_and_scores(change, flagged):
    answers = list(ATTENTIVE)
    if "item" in change:
        answers[2] = change.pop("item")
    responses, wide = batch([{"customer_id": "C1", "submitted_at": "2025-01-05", **change}], [answers])
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(result, expected(responses.index, flag_out_of_range=[flagged]))


def test_missing_items_and_extra_columns_in_answers_are_tolerated():
    responses, wide = batch([{"customer_id": "C1", "submitted_at": "2025-01-05"}])
    wide = wide.drop(columns=["trust_1"]).assign(free_text="hello")
    result = flag_responses(responses, wide, INSTRUMENT)
    pd.testing.assert_frame_equal(result, expected(responses.index))


def test_answers_indexed_differently_are_refused():
    responses, wide = batch([{"customer_id": "C1", "submitted_at": "2025-01-05"}])
    with pytest.raises(ValueError, match="indexed like responses"):
        flag_responses(responses, wide.reset_index(drop=True), INSTRUMENT)


def test_row_key_groups_exactly_like_pandas_groupby_with_missing_values_equal():
    # The duplicate rule groups a million responses by one integer per row; the groups must be
    # pandas' own groupby(dropna=False) groups over the same columns, missing values included.
    rng = np.random.default_rng(3)
    n = 4000
    frame = pd.DataFrame(
        {
            "_who": rng.choice(["e:a@x.com", "e:b@x.com", "c:C1", None], n),
            "_wave": rng.choice(["2025-Q1", "2025-Q2"], n),
            "item": rng.choice([1.0, 2.0, np.nan], n),
            "nps": pd.array(rng.choice([9, 10, -1], n), dtype="Int64"),
        }
    )
    frame.loc[frame["nps"] == -1, "nps"] = pd.NA
    columns = ["_who", "_wave", "item", "nps"]
    expected = frame.groupby(columns, dropna=False, sort=False).ngroup().to_numpy()
    key = quality._row_key([frame[c] for c in columns])
    # the same partition of the rows: each expected group maps to one key and back
    pairs = set(zip(expected.tolist(), key.tolist(), strict=True))
    assert len(pairs) == len(set(expected.tolist())) == len(set(key.tolist()))


def _duplicates_by_pandas_groupby(responses: pd.DataFrame, wide: pd.DataFrame) -> np.ndarray:
    """The duplicate rule written plainly with pandas (sort the rows, groupby cumcount, groupby
    shift), as the docstring of flag_responses states it: the reference the fast version must equal."""
    email = responses["email"].map(
        lambda v: "e:" + v.strip().lower() if isinstance(v, str) and v.strip() else None
    )
    customer = responses["customer_id"].map(lambda v: "c:" + v if isinstance(v, str) and v.strip() else None)
    at = pd.to_datetime(responses["submitted_at"])
    quarter = at.dt.year.astype("Int64").astype(str) + "-Q" + at.dt.quarter.astype("Int64").astype(str)
    frame = pd.concat([wide[ITEMS], responses[["nps", "csat", "ces"]].astype(float)], axis=1).assign(
        _who=email.where(email.notna(), customer), _wave=quarter, _at=at, _row=np.arange(len(responses))
    )
    frame = frame.sort_values(["_at", "_row"], kind="stable", na_position="last")
    same = (
        frame.groupby(["_who", "_wave", *ITEMS, "nps", "csat", "ces"], dropna=False, sort=False).cumcount()
        > 0
    )
    soon = (frame["_at"] - frame.groupby("_who", sort=False)["_at"].shift()) <= pd.Timedelta(days=7)
    flagged = frame["_who"].notna() & (same | soon)
    return flagged.reindex(responses.index).to_numpy()


@pytest.mark.parametrize("seed", range(5))
def test_duplicate_flags_equal_the_rule_written_with_pandas_groupby(seed):
    """Random batches with shared and missing emails (in mixed case), customers without email, equal
    and missing submission times, copied answers: the flag equals pandas' groupby formulation."""
    rng = np.random.default_rng(seed)
    n = 3000
    people = [f"p{i}@x.com" for i in range(300)] + [f"P{i}@X.com " for i in range(50)] + ["", None] * 60
    times = pd.to_datetime("2025-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
    responses = pd.DataFrame(
        {
            "customer_id": rng.choice(np.array([f"C{i}" for i in range(40)] + [" ", None], dtype=object), n),
            "email": rng.choice(np.array(people, dtype=object), n),
            "submitted_at": times.where(rng.random(n) > 0.05),
            "duration": 240.0,
            "nps": rng.choice([9.0, 10.0, np.nan], n),
            "csat": 5.0,
            "ces": 2.0,
        },
        index=pd.Index([f"R{i}" for i in range(n)], name="response_id"),
    )
    answers = rng.choice([[6.0] * len(ITEMS), ATTENTIVE, [np.nan] * len(ITEMS)], n)
    wide = pd.DataFrame(answers, columns=ITEMS, index=responses.index)
    got = flag_responses(responses, wide, INSTRUMENT)["flag_duplicate"].to_numpy()
    want = _duplicates_by_pandas_groupby(responses, wide)
    assert got.any() and not got.all()
    np.testing.assert_array_equal(got, want)

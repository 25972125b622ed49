"""Pillar indices as the Methodology page defines them, checked against hand-worked answers."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relq.core.instrument import (
    instrument_from_dict,
    load_instrument,
    min_answered,
    pillar_indices,
    reverse_code,
)
from relq.exceptions import InstrumentError

INSTRUMENT = load_instrument()


def test_shipped_instrument_has_three_to_four_items_per_pillar_with_a_reverse_item():
    for pillar in ("trust", "commitment", "satisfaction"):
        items = INSTRUMENT.items_of(pillar)
        assert 3 <= len(items) <= 4
        assert any(item.reverse for item in items)
    assert (INSTRUMENT.scale_min, INSTRUMENT.scale_max) == (1, 7)


def test_pillar_index_matches_hand_worked_example():
    # trust answers 6, 5, 7 and reverse-keyed 2 -> 6; mean 6 -> 100*(6-1)/6 = 83.33
    # commitment 4, 4, 4, reverse 4 -> 4: 50; satisfaction 7, 7, reverse 1 -> 7: 100
    wide = pd.DataFrame(
        {
            "trust_1": [6],
            "trust_2": [5],
            "trust_3": [7],
            "trust_4": [2],
            "commitment_1": [4],
            "commitment_2": [4],
            "commitment_3": [4],
            "commitment_4": [4],
            "satisfaction_1": [7],
            "satisfaction_2": [7],
            "satisfaction_3": [1],
        }
    )
    out = pillar_indices(wide, INSTRUMENT)
    assert out.loc[0, "trust"] == pytest.approx(250 / 3)
    assert out.loc[0, "commitment"] == pytest.approx(50)
    assert out.loc[0, "satisfaction"] == pytest.approx(100)
    assert out.loc[0, "rq"] == pytest.approx((250 / 3 + 50 + 100) / 3)


@pytest.mark.parametrize(
    "answers, expected",
    [
        ([7, 7, 7, np.nan], 100.0),  # 3 of 4 answered: ⌈8/3⌉ = 3 is enough
        ([7, 7, np.nan, np.nan], math.nan),  # 2 of 4: too few
        ([np.nan] * 4, math.nan),
    ],
)
def test_index_needs_two_thirds_of_items(answers, expected):
    wide = pd.DataFrame([answers], columns=["trust_1", "trust_2", "trust_3", "trust_4"])
    got = pillar_indices(wide, INSTRUMENT).loc[0, "trust"]
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_rq_missing_when_a_pillar_is_missing():
    wide = pd.DataFrame({"trust_1": [7], "trust_2": [7], "trust_3": [7]})
    out = pillar_indices(wide, INSTRUMENT)
    assert out.loc[0, "trust"] == pytest.approx(100)
    assert math.isnan(out.loc[0, "rq"])


@given(st.integers(1, 7))
def test_reverse_coding_twice_is_the_identity(x):
    assert reverse_code(reverse_code(x, 1, 7), 1, 7) == x


@given(st.integers(1, 40))
def test_min_answered_is_ceiling_of_two_thirds(k):
    assert min_answered(k) == -(-2 * k // 3)
    assert min_answered(k) * 3 >= 2 * k > (min_answered(k) - 1) * 3


@given(st.lists(st.integers(1, 7), min_size=4, max_size=4))
def test_index_stays_on_0_to_100(answers):
    wide = pd.DataFrame([answers], columns=["trust_1", "trust_2", "trust_3", "trust_4"])
    assert 0 <= pillar_indices(wide, INSTRUMENT).loc[0, "trust"] <= 100


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"items": [{"id": "a", "pillar": "loyalty", "text": "x"}]}, "expected one of trust"),
        ({"scale": {"min": 5, "max": 1}, "items": []}, "must be greater than min"),
        ({"items": [{"id": "t", "pillar": "trust", "text": "x"}]}, "no item measures commitment"),
    ],
)
def test_bad_instrument_gets_a_clear_sentence(raw, message):
    with pytest.raises(InstrumentError, match=message):
        instrument_from_dict(raw)

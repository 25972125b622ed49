"""Data-quality flags for survey responses (Methodology page, "Data-quality flags").

Flags are shown and can be used as a filter; they never remove a response by themselves.
The same function serves the demo generator and the importer, so a flag means the same thing
whichever way a response arrived.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from relq.store.schema import QUALITY_FLAGS

__all__ = ["DUPLICATE_WINDOW", "QUALITY_FLAGS", "SCORE_RANGES", "STRAIGHTLINE_MIN_ITEMS", "flag_responses"]


# Valid answers of the single-question scores (inclusive).
SCORE_RANGES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
# A straight line over fewer items than this is not evidence of inattention.
STRAIGHTLINE_MIN_ITEMS = 6
# A second response from the same respondent this soon after the previous one is a re-submission.
DUPLICATE_WINDOW = pd.Timedelta(days=7)


def flag_responses(responses: pd.DataFrame, answers_wide: pd.DataFrame, instrument) -> pd.DataFrame:
    """The four data-quality flags of each response, as bool columns indexed like ``responses``.

    ``responses`` needs ``customer_id``, ``email``, ``submitted_at`` and ``duration``; ``wave``,
    ``nps``, ``csat`` and ``ces`` are used when present. ``answers_wide`` holds the raw item
    answers (one column per instrument item id, NaN = unanswered), indexed like ``responses``;
    items it lacks count as unanswered, columns that are not items are ignored.

    Rules:

    - **flag_duplicate** — the respondent is the person: the lower-cased ``email``, else the
      ``customer_id`` when the response carries no email (a response with neither is never a
      duplicate). Colleagues at one customer account answer with their own addresses, so they
      are different respondents.
      A response is a duplicate when (a) the same respondent already gave, in the same survey
      wave (``wave``; where it is missing, the calendar quarter of ``submitted_at``), identical
      item answers (unanswered counts as an answer) and identical nps, csat and ces; or (b) the
      same respondent's previous response was submitted at most 7 days earlier. Responses are
      taken in ``submitted_at`` order, so the first of each group is kept unflagged and every
      later one is flagged. Rule (b) chains: answers on days 0, 5 and 10 flag days 5 and 10.
    - **flag_speeder** — ``duration`` below half the median duration of this batch; a missing
      duration is not a speeder.
    - **flag_straightliner** — at least 6 items answered and all of them the same raw value.
      With reverse-keyed items in the instrument an attentive respondent rarely does this.
    - **flag_out_of_range** — any item outside the instrument's scale, nps outside 0–10, csat
      outside 1–5 or ces outside 1–7 (missing values are not out of range).

    >>> from relq.core.instrument import load_instrument
    >>> inst = load_instrument()
    >>> resp = pd.DataFrame({"customer_id": ["C1", "C1"], "email": [None, None],
    ...                      "submitted_at": pd.to_datetime(["2025-01-10 09:00", "2025-01-10 09:05"]),
    ...                      "duration": [240.0, 60.0], "nps": [9, 9], "csat": [5, 5], "ces": [2, 2]})
    >>> wide = pd.DataFrame({item: [6.0, 6.0] for item in inst.item_ids})
    >>> flag_responses(resp, wide, inst).to_dict("list")  # doctest: +NORMALIZE_WHITESPACE
    {'flag_duplicate': [False, True], 'flag_speeder': [False, True],
     'flag_straightliner': [True, True], 'flag_out_of_range': [False, False]}
    """
    missing = [col for col in ("customer_id", "email", "submitted_at", "duration") if col not in responses]
    if missing:
        raise ValueError(f"flag_responses needs response columns {', '.join(missing)}; map them first.")
    if len(answers_wide) != len(responses) or not answers_wide.index.equals(responses.index):
        raise ValueError("answers_wide must be indexed like responses (one row per response, same order).")

    items = _item_block(answers_wide, instrument.item_ids)
    scores = pd.DataFrame(
        {name: _numeric(responses[name]) if name in responses else np.nan for name in SCORE_RANGES},
        index=responses.index,
    )
    flags = pd.DataFrame(
        {
            "flag_duplicate": _duplicates(responses, items, scores),
            "flag_speeder": _speeders(_numeric(responses["duration"])),
            "flag_straightliner": _straightliners(items),
            "flag_out_of_range": _out_of_range(items, scores, instrument.scale_min, instrument.scale_max),
        },
        index=responses.index,
    )
    return flags[list(QUALITY_FLAGS)]


def _numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype(float)


def _item_block(answers_wide: pd.DataFrame, item_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {item: _numeric(answers_wide[item]) if item in answers_wide else np.nan for item in item_ids},
        index=answers_wide.index,
    )


def _respondents(responses: pd.DataFrame) -> np.ndarray:
    """One integer per response naming its respondent: the lower-cased email (the person), else the
    customer_id; -1 when it has neither. Emails and customer ids are normalised once per distinct
    value and only the distinct labels are hashed (a million responses come from far fewer people);
    an email never equals a customer id."""
    e_codes, e_texts = _labels(responses["email"], lambda v: str(v).strip().lower())
    c_codes, c_texts = _labels(responses["customer_id"], lambda v: str(v) if str(v).strip() != "" else "")
    labels = [*("e:" + t if t else None for t in e_texts), *("c:" + t if t else None for t in c_texts)]
    codes = np.full(len(labels) + 1, -1, dtype=np.int64)  # the last one: no email, no customer id
    named = np.array([label is not None for label in labels] + [False], dtype=bool)
    codes[named] = pd.factorize(np.array([label for label in labels if label is not None], dtype=object))[0]
    by_email = codes[np.where(e_codes >= 0, e_codes, len(labels))]
    by_customer = codes[np.where(c_codes >= 0, len(e_texts) + c_codes, len(labels))]
    return np.where(by_email >= 0, by_email, by_customer)


def _labels(values: pd.Series, normal) -> tuple[np.ndarray, list[str]]:
    """(codes, normalised text of each distinct value); code -1 where the value is missing."""
    codes, uniques = pd.factorize(values)
    return codes, [normal(u) for u in uniques]


def _duplicates(responses: pd.DataFrame, items: pd.DataFrame, scores: pd.DataFrame) -> pd.Series:
    submitted = pd.to_datetime(responses["submitted_at"], errors="coerce")
    # 'YYYY-Qn' (or '<NA>-Q<NA>' without a date), labelled once per distinct quarter
    codes, keys = pd.factorize(submitted.dt.year * 10 + submitted.dt.quarter)
    labels = np.array([*(f"{int(k) // 10}-Q{int(k) % 10}" for k in keys), "<NA>-Q<NA>"], dtype=object)
    quarter = pd.Series(labels[codes], index=responses.index)
    wave = (
        responses["wave"].astype(object).where(responses["wave"].notna(), quarter)
        if "wave" in responses
        else quarter
    )
    who = _respondents(responses)
    # Responses in submitted_at order, equal times (and missing ones, last) in file order, so "the
    # first" is well defined; the rows themselves are not moved, only this order is.
    at = submitted.to_numpy(dtype="datetime64[ns]")
    order = np.argsort(np.where(np.isnat(at), np.iinfo(np.int64).max, at.view(np.int64)), kind="stable")

    content = [who, wave, *(items[c] for c in items.columns), *(scores[c] for c in scores.columns)]
    same = _row_key(content)[order]
    # equal keys = equal content (a missing value equal to another): every copy after the first
    first_copy = np.zeros(len(same), dtype=bool)
    first_copy[np.unique(same, return_index=True)[1]] = True

    # the respondent's previous response, in that order: sort by respondent, keeping the order
    who_sorted, at_sorted = who[order], at[order]
    by_who = np.argsort(who_sorted, kind="stable")
    gap = np.full(len(order), np.timedelta64("NaT"), dtype="timedelta64[ns]")
    follows = who_sorted[by_who][1:] == who_sorted[by_who][:-1]
    gap[by_who[1:][follows]] = (at_sorted[by_who][1:] - at_sorted[by_who][:-1])[follows]
    soon_after = gap <= DUPLICATE_WINDOW.to_timedelta64()  # NaT (no previous, no date) is never <=

    flagged = (who_sorted >= 0) & (~first_copy | soon_after)
    out = np.zeros(len(order), dtype=bool)
    out[order] = flagged
    return pd.Series(out, index=responses.index)


def _row_key(columns: list) -> np.ndarray:
    """One integer per row, equal exactly when the rows agree in every one of ``columns`` (arrays or
    Series of one length; a missing value equals another missing value, as in
    ``groupby(dropna=False)``) — a million rows grouped by one integer instead of by sixteen columns
    of mixed types. The key is renumbered only when the next column could overflow it."""
    key = np.zeros(len(columns[0]) if columns else 0, dtype=np.int64)
    bound = 1  # key < bound
    for values in columns:
        codes = pd.factorize(values)[0].astype(np.int64) + 1  # missing: 0
        size = int(codes.max(initial=0)) + 1
        if bound * size >= 2**62:
            key = pd.factorize(key)[0].astype(np.int64)  # back below the row count
            bound = int(key.max(initial=0)) + 1
        key = key * size + codes
        bound *= size
    return key


def _speeders(duration: pd.Series) -> pd.Series:
    median = duration.median()
    if np.isnan(median):
        return pd.Series(False, index=duration.index)
    return (duration < median / 2).fillna(False).astype(bool)


def _straightliners(items: pd.DataFrame) -> pd.Series:
    block = items.to_numpy(dtype=float)
    answered = (~np.isnan(block)).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows; the count handles them
        same = np.nanmin(block, axis=1) == np.nanmax(block, axis=1)
    return pd.Series((answered >= STRAIGHTLINE_MIN_ITEMS) & same, index=items.index)


def _out_of_range(items: pd.DataFrame, scores: pd.DataFrame, lo: float, hi: float) -> pd.Series:
    block = items.to_numpy(dtype=float)
    bad = ((block < lo) | (block > hi)).any(axis=1)
    for name, (low, high) in SCORE_RANGES.items():
        values = scores[name].to_numpy(dtype=float)
        bad |= (values < low) | (values > high)
    return pd.Series(bad, index=items.index)

"""The questionnaire (``data/instrument.toml``) and the pillar indices it defines.

Pillar index of a response (DESIGN.md §Definitions): reverse-keyed items become
``min + max - x``; the index exists when at least ⌈2k/3⌉ of the pillar's k items are answered;
it is ``100 · (mean - min) / (max - min)`` of the answered items. RQ is the mean of the three
pillar indices when all three exist.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from relq.exceptions import InstrumentError
from relq.schema import PILLARS

__all__ = [
    "Item",
    "Instrument",
    "DEFAULT_INSTRUMENT_PATH",
    "load_instrument",
    "reverse_code",
    "min_answered",
    "pillar_indices",
]

DEFAULT_INSTRUMENT_PATH = Path(__file__).resolve().parent.parent / "data" / "instrument.toml"


@dataclass(frozen=True)
class Item:
    id: str
    pillar: str
    text: str
    reverse: bool = False


@dataclass(frozen=True)
class Instrument:
    items: tuple[Item, ...]
    scale_min: float = 1.0
    scale_max: float = 7.0

    @property
    def item_ids(self) -> list[str]:
        return [item.id for item in self.items]

    def items_of(self, pillar: str) -> list[Item]:
        return [item for item in self.items if item.pillar == pillar]

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)


def load_instrument(path: str | Path | None = None) -> Instrument:
    """Read and validate an instrument file; a wrong file gets a sentence saying what to fix."""
    path = Path(path) if path else DEFAULT_INSTRUMENT_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InstrumentError(f"{path}: instrument file not found.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InstrumentError(f"{path}: not valid TOML ({exc}).") from exc
    return instrument_from_dict(raw, source=str(path))


def instrument_from_dict(raw: dict, source: str = "instrument") -> Instrument:
    scale = raw.get("scale", {})
    lo, hi = float(scale.get("min", 1)), float(scale.get("max", 7))
    if not hi > lo:
        raise InstrumentError(f"{source}: scale max ({hi:g}) must be greater than min ({lo:g}).")
    items = []
    seen: set[str] = set()
    for n, entry in enumerate(raw.get("items", []), start=1):
        missing = [key for key in ("id", "pillar", "text") if not entry.get(key)]
        if missing:
            raise InstrumentError(f"{source}: item {n} lacks {', '.join(missing)}.")
        if entry["pillar"] not in PILLARS:
            raise InstrumentError(
                f"{source}: item {entry['id']!r} has pillar {entry['pillar']!r}; "
                f"expected one of {', '.join(PILLARS)}."
            )
        if entry["id"] in seen:
            raise InstrumentError(f"{source}: item id {entry['id']!r} appears twice.")
        seen.add(entry["id"])
        items.append(
            Item(str(entry["id"]), entry["pillar"], str(entry["text"]), bool(entry.get("reverse", False)))
        )
    for pillar in PILLARS:
        if not any(item.pillar == pillar for item in items):
            raise InstrumentError(f"{source}: no item measures {pillar}; each pillar needs at least one.")
    return Instrument(tuple(items), lo, hi)


def reverse_code(values, scale_min: float, scale_max: float):
    """Reverse-key an answer: ``min + max - x`` (applying it twice gives the answer back)."""
    return scale_min + scale_max - values


def min_answered(k: int) -> int:
    """Items a pillar index needs: ⌈2k/3⌉ of its k items."""
    return math.ceil(2 * k / 3)


def pillar_indices(answers: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Pillar indices and RQ for wide answers (one row per response, one column per item id).

    Values outside the scale must already be set to NaN by the caller (they reject the row).

    >>> inst = load_instrument()
    >>> wide = pd.DataFrame({"trust_1": [7], "trust_2": [7], "trust_3": [7], "trust_4": [1]})
    >>> pillar_indices(wide, inst)["trust"].tolist()
    [100.0]
    """
    out = pd.DataFrame(index=answers.index)
    span = instrument.scale_max - instrument.scale_min
    for pillar in PILLARS:
        items = instrument.items_of(pillar)
        cols = []
        for item in items:
            col = (
                pd.to_numeric(answers[item.id], errors="coerce").astype(float)
                if item.id in answers
                else pd.Series(np.nan, index=answers.index)
            )
            if item.reverse:
                col = reverse_code(col, instrument.scale_min, instrument.scale_max)
            cols.append(col.to_numpy())
        block = np.column_stack(cols)
        answered = (~np.isnan(block)).sum(axis=1)
        total = np.nansum(block, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / answered
        index = 100.0 * (mean - instrument.scale_min) / span
        index[answered < min_answered(len(items))] = np.nan
        out[pillar] = index
    out["rq"] = out[list(PILLARS)].mean(axis=1, skipna=False)
    return out

"""The questionnaire (``data/instrument.toml``) and the pillar indices it defines.

Pillar index of a response (Methodology page → Definitions): reverse-keyed items become
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

# The three pillars of relationship quality, in the order every screen shows them.
PILLARS: tuple[str, ...] = ("trust", "commitment", "satisfaction")

__all__ = [
    "Item",
    "Instrument",
    "DEFAULT_INSTRUMENT_PATH",
    "load_instrument",
    "reverse_code",
    "min_answered",
    "pillar_indices",
    "configured_instrument",
    "instrument_to_toml",
    "instrument_from_frame",
    "instrument_frame",
    "save_instrument",
]

DEFAULT_INSTRUMENT_PATH = Path(__file__).resolve().parents[2] / "data" / "instrument.toml"


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


def configured_instrument() -> Instrument:
    """The instrument RelQ uses: the file named by RELQ_INSTRUMENT (default data/instrument.toml)."""
    from relq.core.settings import load_settings

    return load_instrument(load_settings().instrument_path)


def _toml_string(text: str) -> str:
    """A TOML basic string (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in str(text):
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def instrument_to_toml(instrument: Instrument) -> str:
    """The instrument as ``instrument.toml`` text; :func:`instrument_from_dict` reads it back.

    >>> inst = load_instrument()
    >>> instrument_from_dict(tomllib.loads(instrument_to_toml(inst))) == inst
    True
    """
    lines = [
        "# RelQ questionnaire: the three pillars of relationship quality (edited in RelQ).",
        "# `reverse = true` items are coded min + max - x. Indices are recomputed from the stored",
        "# raw answers when this file changes.",
        "",
        "[scale]",
        f"min = {instrument.scale_min:g}",
        f"max = {instrument.scale_max:g}",
    ]
    for item in instrument.items:
        lines += [
            "",
            "[[items]]",
            f"id = {_toml_string(item.id)}",
            f"pillar = {_toml_string(item.pillar)}",
            f"text = {_toml_string(item.text)}",
            f"reverse = {'true' if item.reverse else 'false'}",
        ]
    return "\n".join(lines) + "\n"


def instrument_frame(instrument: Instrument) -> pd.DataFrame:
    """One row per item (id, pillar, text, reverse): what the instrument editor shows."""
    return pd.DataFrame(
        [(i.id, i.pillar, i.text, i.reverse) for i in instrument.items],
        columns=["id", "pillar", "text", "reverse"],
    )


def instrument_from_frame(frame: pd.DataFrame, scale_min: float = 1.0, scale_max: float = 7.0) -> Instrument:
    """Validate an edited item table (as from :func:`instrument_frame`) into an Instrument.

    Blank rows are dropped; anything else wrong raises InstrumentError with a sentence.
    """
    items = []
    for record in frame.to_dict("records"):
        values = {k: record.get(k) for k in ("id", "pillar", "text", "reverse")}
        cleaned = {
            k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in values.items()
        }
        if not any(str(cleaned[k]).strip() for k in ("id", "pillar", "text")):
            continue
        items.append(
            {
                "id": str(cleaned["id"]).strip(),
                "pillar": str(cleaned["pillar"]).strip(),
                "text": str(cleaned["text"]).strip(),
                "reverse": bool(cleaned["reverse"]) if cleaned["reverse"] != "" else False,
            }
        )
    return instrument_from_dict(
        {"scale": {"min": scale_min, "max": scale_max}, "items": items}, source="the edited instrument"
    )


def save_instrument(instrument: Instrument, path: str | Path | None = None) -> Path:
    """Write the instrument to ``path`` (default: the configured file) atomically; returns the path."""
    if path is None:
        from relq.core.settings import load_settings

        path = load_settings().instrument_path
    path = Path(path)
    text = instrument_to_toml(instrument)
    instrument_from_dict(tomllib.loads(text), source=str(path))  # never write a file RelQ cannot read
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path

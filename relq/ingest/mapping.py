"""Column mapping: suggested targets, the mapping-file format (README → Mapping files), saved templates.

A mapping file is ``{"kind": ..., "columns": {"<source column>": "<target>"}, "labels":
{"<answer text>": <number or null>}}``; a source column is named by its first header row or by
its Qualtrics ImportId. A target ``null`` or ``""`` ignores the column; ``extra:<name>`` keeps a
customer column as a segment dimension.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from rapidfuzz import fuzz, process

from relq.core.instrument import Instrument
from relq.exceptions import ImportRejected
from relq.ingest.detect import SourceColumn, Table, normalise_header
from relq.store.schema import CUSTOMER_FIELDS, RESPONSE_FIELDS, TICKET_FIELDS, TRANSACTION_FIELDS

__all__ = [
    "KINDS",
    "Mapping",
    "Suggestion",
    "targets_for",
    "suggest_mapping",
    "resolve_mapping",
    "load_mapping",
    "mapping_from_dict",
    "save_template",
    "find_template",
    "list_templates",
    "TEMPLATES_DIR",
    "AGREEMENT_LABELS",
]

KINDS = ("survey", "customers", "transactions", "tickets")
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "data" / "templates"
EXTRA_PREFIX = "extra:"
AUTO_CONFIDENCE = 0.8  # suggestions below this are shown but not applied

# Targets beyond the stored fields that the importer turns into stored ones.
_HELPER_TARGETS = {
    "survey": ("started_at",),
    "customers": ("first_name", "last_name"),
    "transactions": ("email",),
    "tickets": ("email", "first_response_minutes"),
}
_FIELDS = {
    "survey": RESPONSE_FIELDS,
    "customers": CUSTOMER_FIELDS,
    "transactions": TRANSACTION_FIELDS,
    "tickets": TICKET_FIELDS,
}

# Default answer labels on the 7-point agreement scale (and the 5-point one, used when the
# instrument's scale is 1–5). Matched case-insensitively after trimming.
AGREEMENT_LABELS: dict[str, float] = {
    "strongly disagree": 1,
    "disagree": 2,
    "somewhat disagree": 3,
    "slightly disagree": 3,
    "neither agree nor disagree": 4,
    "neutral": 4,
    "somewhat agree": 5,
    "slightly agree": 5,
    "agree": 6,
    "strongly agree": 7,
}
AGREEMENT_LABELS_5: dict[str, float] = {
    "strongly disagree": 1,
    "disagree": 2,
    "neither agree nor disagree": 3,
    "neutral": 3,
    "agree": 4,
    "strongly agree": 5,
}
CSAT_LABELS: dict[str, float] = {
    "very dissatisfied": 1,
    "dissatisfied": 2,
    "neither satisfied nor dissatisfied": 3,
    "neutral": 3,
    "satisfied": 4,
    "very satisfied": 5,
}
CES_LABELS: dict[str, float] = {
    "very difficult": 1,
    "difficult": 2,
    "somewhat difficult": 3,
    "neither easy nor difficult": 4,
    "neutral": 4,
    "somewhat easy": 5,
    "easy": 6,
    "very easy": 7,
    **AGREEMENT_LABELS,
}

# Header synonyms (normalised) per kind, best first. Confidence 1.0 for the first list entry.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "survey": {
        "response_id": (
            "responseid",
            "response id",
            "respondent id",
            "#",
            "response token",
            "token",
            "submission id",
            "responseid",
        ),
        "customer_id": (
            "externalreference",
            "external reference",
            "externaldatareference",
            "external data reference",
            "custom data 1",
            "customer id",
            "customer",
            "account id",
        ),
        "email": (
            "recipientemail",
            "recipient email",
            "email",
            "email address",
            "e mail",
            "emailaddress",
            "respondent email",
        ),
        "submitted_at": (
            "enddate",
            "end date",
            "recordeddate",
            "recorded date",
            "timestamp",
            "submit date utc",
            "completion time",
            "submitted at",
            "submitted",
            "date submitted",
            "response date",
            "completed at",
            "date",
        ),
        "started_at": ("startdate", "start date", "start time", "start date utc", "started at"),
        "duration": ("duration in seconds", "duration", "duration seconds", "time taken seconds"),
        "wave": ("wave", "survey wave"),
        "nps": ("nps", "net promoter score", "q nps", "likelihood to recommend", "ltr"),
        "csat": ("csat", "customer satisfaction"),
        "ces": ("ces", "customer effort", "customer effort score"),
        "comment": ("comment", "comments", "feedback", "verbatim", "open feedback"),
    },
    "customers": {
        "customer_id": (
            "customer id",
            "record id",
            "account id",
            "id",
            "company id",
            "contact id",
            "client id",
            "customer number",
            "account number",
            "customer",
        ),
        "external_ref": ("external ref", "external reference", "external id", "external customer id"),
        "name": ("name", "account name", "customer name", "client name", "full name"),
        "first_name": ("first name", "firstname"),
        "last_name": ("last name", "lastname", "surname"),
        "email": ("email", "email address", "e mail", "primary email"),
        "company": ("company", "company name", "organization", "organisation", "associated company"),
        "region": (
            "region",
            "country region",
            "country",
            "billing country",
            "billingcountry",
            "territory",
            "market",
            "billing state province",
        ),
        "industry": ("industry", "sector", "vertical"),
        "plan": ("plan", "tier", "subscription", "package", "edition", "product"),
        "owner": (
            "owner",
            "contact owner",
            "company owner",
            "account owner",
            "hubspot owner",
            "ownerid",
            "account manager",
            "csm",
        ),
        "acquired_at": (
            "acquired at",
            "create date",
            "created date",
            "createddate",
            "createdate",
            "created",
            "customer since",
            "signup date",
            "became a customer date",
            "created at",
        ),
        "churned_at": ("churned at", "churn date", "cancellation date", "cancelled at", "canceled at"),
        "annual_value": (
            "annual value",
            "annual revenue",
            "annualrevenue",
            "arr",
            "annual contract value",
            "acv",
            "revenue",
        ),
    },
    "transactions": {
        "transaction_id": (
            "transaction id",
            "record id",
            "deal id",
            "opportunity id",
            "order id",
            "invoice id",
            "invoice number",
            "order number",
            "id",
        ),
        "customer_id": (
            "customer id",
            "account id",
            "associated company ids",
            "associated company id",
            "associated company ids primary",
            "company id",
            "accountid",
            "client id",
            "customer",
        ),
        "email": ("email", "customer email", "billing email"),
        "occurred_at": (
            "occurred at",
            "close date",
            "closedate",
            "order date",
            "invoice date",
            "transaction date",
            "purchase date",
            "date",
            "created date",
        ),
        "amount": ("amount", "total", "amount usd", "order total", "net amount", "value", "revenue", "price"),
    },
    "tickets": {
        "ticket_id": ("ticket id", "id", "ticket number", "case number", "case id"),
        "customer_id": (
            "customer id",
            "requester external id",
            "account id",
            "organization external id",
            "customer",
        ),
        "email": ("requester email", "email", "contact email", "customer email"),
        "opened_at": (
            "opened at",
            "created at",
            "created",
            "date opened",
            "opened date",
            "created date",
            "date time opened",
        ),
        "first_response_at": ("first response at", "first reply at", "first replied at"),
        "first_response_minutes": ("first reply time in minutes", "first response time in minutes"),
        "resolved_at": (
            "resolved at",
            "solved at",
            "closed at",
            "date time closed",
            "resolution date",
            "closed date",
        ),
        "channel": ("channel", "via", "case origin", "source"),
        "status": ("status", "ticket status"),
    },
}

# Question wording that identifies the standard survey measures.
_MEASURE_PATTERNS = (
    ("nps", re.compile(r"recommend|net promoter", re.IGNORECASE)),
    ("ces", re.compile(r"\beas(y|ier|ily)\b|effort", re.IGNORECASE)),
    ("csat", re.compile(r"how satisfied|satisfaction with|overall satisfaction|\bcsat\b", re.IGNORECASE)),
    (
        "comment",
        re.compile(
            r"comment|anything else|tell us (why|more)|why did you|what could we|feedback", re.IGNORECASE
        ),
    ),
)


@dataclass(frozen=True)
class Mapping:
    kind: str
    columns: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "columns": dict(self.columns), "labels": dict(self.labels)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class Suggestion:
    source: str
    text: str
    target: str | None
    confidence: float
    reason: str


def targets_for(kind: str, instrument: Instrument | None = None) -> list[str]:
    """Every target a column of this kind can map to (extra:<name> aside)."""
    if kind not in _FIELDS:
        raise ImportRejected(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}.")
    out = list(_FIELDS[kind]) + list(_HELPER_TARGETS.get(kind, ()))
    if kind == "survey" and instrument is not None:
        out += instrument.item_ids
    return out


def mapping_from_dict(raw: object, source: str = "mapping") -> Mapping:
    """Validate a mapping-file dict; a wrong one gets a sentence saying what to fix."""
    if not isinstance(raw, dict):
        raise ImportRejected(f"{source}: a mapping file is a JSON object with kind, columns and labels.")
    kind = raw.get("kind", "auto")
    if kind not in (*KINDS, "auto"):
        raise ImportRejected(f"{source}: kind {kind!r} is not one of {', '.join(KINDS)}.")
    columns = raw.get("columns", {}) or {}
    labels = raw.get("labels", {}) or {}
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in columns.items()
    ):
        raise ImportRejected(f'{source}: "columns" must map source column names to target names.')
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
        for k, v in labels.items()
    ):
        raise ImportRejected(f'{source}: "labels" must map answer texts to numbers (or null for no answer).')
    return Mapping(kind, {k: (v or None) for k, v in columns.items()}, {k: v for k, v in labels.items()})


def load_mapping(path: str | Path) -> Mapping:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise ImportRejected(f"{path.name}: mapping file not found.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportRejected(f"{path.name}: the mapping file is not valid JSON ({exc}).") from exc
    return mapping_from_dict(raw, path.name)


def _item_texts(instrument: Instrument) -> dict[str, str]:
    return {item.id: item.text for item in instrument.items}


def _clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", str(text))).strip().lower()


def _wordings(text: str) -> list[str]:
    """The question text and, for matrix questions, the statement part of it."""
    clean = _clean_text(text)
    out = [clean]
    m = re.match(r"^(.*)\[(.*)\]\s*$", clean)
    if m:
        out.append(m.group(2).strip())
    for sep in (" - ", " – ", ": "):
        if sep in clean:
            out.append(clean.rsplit(sep, 1)[1].strip())
    return out


def _suggest_one(
    col: SourceColumn, kind: str, instrument: Instrument | None, targets: set[str]
) -> Suggestion:
    name_n = normalise_header(col.name)
    text = col.text or col.name
    # 1. the header is a target name
    if col.name.strip() in targets:
        return Suggestion(col.name, text, col.name.strip(), 1.0, "column name is the target name")
    if col.import_id and col.import_id in targets:
        return Suggestion(col.name, text, col.import_id, 1.0, "Qualtrics ImportId is the target name")
    # 2. known export headers (the first header row, or the second one of legacy Qualtrics)
    for key in dict.fromkeys((name_n, normalise_header(text))):
        for target, names in SYNONYMS.get(kind, {}).items():
            if target in targets and key in names:
                conf = 1.0 if names.index(key) == 0 else 0.95
                return Suggestion(col.name, text, target, conf, "known export column")
    if kind == "survey" and instrument is not None:
        items = {k: _clean_text(v) for k, v in _item_texts(instrument).items()}
        # matrix questions carry the statement after " - " (Qualtrics, SurveyMonkey) or in [ ]
        wordings = [w for w in dict.fromkeys(_wordings(text)) if w]
        for wording in wordings:
            for item_id, item_text in items.items():
                if wording == item_text:
                    return Suggestion(col.name, text, item_id, 1.0, "question text equals the item text")
        best_item, best_conf = None, 0.0
        for wording in wordings:
            found = process.extractOne(wording, items, scorer=fuzz.token_set_ratio)
            if found and found[1] >= 60:
                ratio = fuzz.ratio(wording, found[0]) / 100
                conf = round(min(found[1] / 100, 0.5 + ratio / 2), 2)
                if conf > best_conf:
                    best_item, best_conf = found[2], conf
        if best_item and best_conf >= 0.6:
            return Suggestion(
                col.name, text, best_item, best_conf, f"question text resembles item {best_item}"
            )
        for target, pattern in _MEASURE_PATTERNS:
            if pattern.search(text):
                return Suggestion(col.name, text, target, 0.85, "question wording")
    return Suggestion(col.name, text, None, 0.0, "no match")


def suggest_mapping(table: Table, kind: str, instrument: Instrument | None = None) -> list[Suggestion]:
    """A suggested target per source column; each target goes to its most confident column."""
    targets = set(targets_for(kind, instrument))
    raw = [_suggest_one(c, kind, instrument, targets) for c in table.columns]
    if kind == "customers" and table.layout == "hubspot_companies":
        raw = [
            Suggestion(s.source, s.text, "name", 0.95, "HubSpot company name")
            if normalise_header(s.source) == "company name"
            else s
            for s in raw
        ]
    best: dict[str, tuple[float, int]] = {}
    for i, s in enumerate(raw):
        if s.target and (s.target not in best or s.confidence > best[s.target][0]):
            best[s.target] = (s.confidence, i)
    out = []
    for i, s in enumerate(raw):
        if s.target and best[s.target][1] != i:
            s = Suggestion(s.source, s.text, None, 0.0, f"{s.target} already taken by a better match")
        if s.target is None and kind == "customers":
            s = Suggestion(
                s.source, s.text, EXTRA_PREFIX + s.source.strip(), 0.5, "kept as a segment dimension"
            )
        out.append(s)
    return out


def resolve_mapping(
    table: Table, kind: str, mapping: Mapping | None, instrument: Instrument | None
) -> tuple[dict[str, str], list[Suggestion], list[str]]:
    """The applied source→target mapping: the user's mapping first, then confident suggestions.

    Returns (applied, suggestions, messages). Mapping keys may be a column name or its ImportId.
    """
    suggestions = suggest_mapping(table, kind, instrument)
    valid = set(targets_for(kind, instrument))
    applied: dict[str, str] = {}
    messages: list[str] = []
    explicit: set[str] = set()
    if mapping is not None:
        by_key: dict[str, str] = {}
        for col in table.columns:
            by_key.setdefault(col.name, col.name)
            by_key.setdefault(col.name.strip(), col.name)
            if col.import_id:
                by_key.setdefault(col.import_id, col.name)
        for key, target in mapping.columns.items():
            source = by_key.get(key) or by_key.get(key.strip())
            if source is None:
                messages.append(f"Mapping column {key!r} is not in this file; ignored.")
                continue
            explicit.add(source)
            if not target:
                continue
            if target not in valid and not (kind == "customers" and target.startswith(EXTRA_PREFIX)):
                raise ImportRejected(
                    f"mapping: column {key!r} maps to {target!r}, which is not a {kind} target; "
                    f"expected one of {', '.join(sorted(valid))}."
                )
            if target in applied.values() and not target.startswith(EXTRA_PREFIX):
                raise ImportRejected(f"mapping: two columns map to {target!r}; map each target once.")
            applied[source] = target
    taken = set(applied.values())
    for s in suggestions:
        if s.source in explicit or s.target is None or s.target in taken:
            continue
        if s.confidence >= AUTO_CONFIDENCE or s.target.startswith(EXTRA_PREFIX):
            applied[s.source] = s.target
            taken.add(s.target)
    return applied, suggestions, messages


def header_signature(table: Table) -> set[str]:
    keys = {c.name for c in table.columns}
    keys |= {c.import_id for c in table.columns if c.import_id}
    return keys


def save_template(name: str, mapping: Mapping, directory: Path | None = None) -> Path:
    """Save a mapping as data/templates/<name>.json (the mapping-file format)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.")
    if not slug:
        raise ImportRejected("template: give the template a name made of letters or digits.")
    directory = Path(directory or TEMPLATES_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{slug}.json"
    path.write_text(mapping.to_json(), encoding="utf-8")
    return path


def list_templates(directory: Path | None = None) -> dict[str, Mapping]:
    directory = Path(directory or TEMPLATES_DIR)
    out: dict[str, Mapping] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            out[path.stem] = load_mapping(path)
        except ImportRejected:
            continue
    return out


def find_template(
    table: Table, kind: str | None = None, directory: Path | None = None
) -> tuple[str, Mapping] | None:
    """The saved template whose columns all appear in this file (most columns wins)."""
    signature = header_signature(table)
    best: tuple[int, str, Mapping] | None = None
    for name, mapping in list_templates(directory).items():
        keys = set(mapping.columns)
        if not keys or not keys <= signature:
            continue
        if kind not in (None, "auto") and mapping.kind not in (kind, "auto"):
            continue
        if best is None or len(keys) > best[0]:
            best = (len(keys), name, mapping)
    return (best[1], best[2]) if best else None

"""Where comment themes are kept: the analysts' rules (versioned), the latest discovery, and the
stored assignments (``comment_themes``) every page and the theme filter read.

Plain SQLAlchemy Core on the tables of :mod:`relq.store.schema`; the reading of comments, the
rules' syntax and discovery live in :mod:`relq.ingest.themes`.
"""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.store import database, dialects, schema

__all__ = [
    "NOT_THEMED",
    "add_rule_version",
    "current_rules",
    "rule_history",
    "has_rules",
    "latest_model",
    "save_discovery",
    "discovered_themes",
    "mark_promoted",
    "theme_catalog",
    "theme_names",
    "pending_comments",
    "commented_clause",
    "SENTIMENTS",
    "THEME_SOURCES",
    "count_if",
    "theme_score_sums",
    "themed_clause",
    "rebuild_theme_sums",
    "save_theme_sums",
    "theme_sums_ready",
    "THEME_CELLS",
    "theme_cells_ready",
]

R = schema.survey_responses
T = schema.comment_themes
F = schema.comment_facts
RULES = schema.theme_rules
MODELS = schema.theme_models
FOUND = schema.theme_discovered

NOT_THEMED = "(not themed)"
SENTIMENTS = ("positive", "neutral", "negative")
THEME_SOURCES = ("rule", "discovered")  # what the pages and the theme filter count as a theme
PILLARS = schema.PILLARS


def commented_clause(responses: sa.Table = R):
    """A response with a comment that has some text."""
    return sa.and_(responses.c.comment.is_not(None), sa.func.length(sa.func.trim(responses.c.comment)) > 0)


# --------------------------------------------------------------------------- rules


def _latest_versions() -> sa.Subquery:
    return (
        sa.select(RULES.c.theme, sa.func.max(RULES.c.version).label("version"))
        .group_by(RULES.c.theme)
        .subquery("latest")
    )


def current_rules(conn: Connection) -> list[dict]:
    """The rules in force: the latest version of each theme that is still active, by name."""
    latest = _latest_versions()
    rows = conn.execute(
        sa.select(RULES)
        .join(latest, sa.and_(RULES.c.theme == latest.c.theme, RULES.c.version == latest.c.version))
        .where(RULES.c.active)
        .order_by(RULES.c.theme)
    ).all()
    return [
        {
            "theme": r.theme,
            "version": int(r.version),
            "phrases": json.loads(r.phrases),
            "exclusions": json.loads(r.exclusions),
            "source": r.source,
            "edited_by": r.edited_by,
            "edited_at": r.edited_at,
        }
        for r in rows
    ]


def has_rules(conn: Connection) -> bool:
    """Whether any rule version was ever written (the starter set is written only into an empty table)."""
    return conn.execute(sa.select(sa.func.count()).select_from(RULES)).scalar_one() > 0


def add_rule_version(
    conn: Connection,
    theme: str,
    phrases: list[str],
    exclusions: list[str],
    *,
    source: str,
    active: bool = True,
    user: str | None = None,
    note: str | None = None,
) -> int:
    """Write the next version of ``theme`` (version 1 for a new theme); returns the version."""
    last = conn.execute(sa.select(sa.func.max(RULES.c.version)).where(RULES.c.theme == theme)).scalar()
    version = int(last or 0) + 1
    conn.execute(
        RULES.insert().values(
            theme=theme,
            version=version,
            phrases=json.dumps(list(phrases), ensure_ascii=False),
            exclusions=json.dumps(list(exclusions), ensure_ascii=False),
            source=source,
            active=active,
            edited_by=user,
            edited_at=datetime.now(),
            note=note,
        )
    )
    return version


def rule_history(conn: Connection) -> pd.DataFrame:
    """Every version of every rule, newest first: theme, version, status, phrases, exclusions, who, when."""
    rows = conn.execute(sa.select(RULES).order_by(RULES.c.edited_at.desc(), RULES.c.version.desc())).all()
    frame = pd.DataFrame(
        [
            {
                "theme": r.theme,
                "version": int(r.version),
                "status": "active" if r.active else "deleted",
                "phrases": "; ".join(json.loads(r.phrases)),
                "exclusions": "; ".join(json.loads(r.exclusions)),
                "source": r.source,
                "edited_by": r.edited_by,
                "edited_at": r.edited_at,
                "note": r.note,
            }
            for r in rows
        ],
        columns=[
            "theme",
            "version",
            "status",
            "phrases",
            "exclusions",
            "source",
            "edited_by",
            "edited_at",
            "note",
        ],
    )
    return frame


# --------------------------------------------------------------------------- discovery


def latest_model(conn: Connection) -> dict | None:
    """The latest discovery's model (k, seed, vocabulary, idf, components, …), or None."""
    row = conn.execute(sa.select(MODELS).order_by(MODELS.c.discovery_id.desc()).limit(1)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    for key in ("vocabulary", "idf", "components"):
        out[key] = json.loads(out[key])
    return out


def save_discovery(conn: Connection, model: dict, themes: list[dict]) -> int:
    """Replace the stored discovery with ``model`` and its ``themes`` (theme, terms); returns its id.

    The assignments of the previous discovery are removed with it.
    """
    last = conn.execute(sa.select(sa.func.max(MODELS.c.discovery_id))).scalar()
    discovery_id = int(last or 0) + 1
    conn.execute(T.delete().where(T.c.source == "discovered"))
    conn.execute(FOUND.delete())
    conn.execute(MODELS.delete())
    values = dict(model)
    for key in ("vocabulary", "idf", "components"):
        values[key] = json.dumps(values[key])
    conn.execute(MODELS.insert().values(discovery_id=discovery_id, **values))
    if themes:
        conn.execute(
            FOUND.insert(),
            [
                {
                    "discovery_id": discovery_id,
                    "position": i,
                    "theme": t["theme"],
                    "terms": json.dumps(list(t["terms"]), ensure_ascii=False),
                    "promoted_to": None,
                }
                for i, t in enumerate(themes)
            ],
        )
    return discovery_id


def discovered_themes(conn: Connection, include_promoted: bool = False) -> list[dict]:
    """The latest discovery's themes in order: theme, terms, promoted_to, position."""
    query = sa.select(FOUND).order_by(FOUND.c.position)
    if not include_promoted:
        query = query.where(FOUND.c.promoted_to.is_(None))
    return [
        {
            "theme": r.theme,
            "terms": json.loads(r.terms),
            "promoted_to": r.promoted_to,
            "position": int(r.position),
        }
        for r in conn.execute(query).all()
    ]


def mark_promoted(conn: Connection, theme: str, rule: str) -> None:
    """A discovered theme became the rule ``rule``: it leaves the discovered list and its
    assignments give way to the rule's."""
    conn.execute(FOUND.update().where(FOUND.c.theme == theme).values(promoted_to=rule))
    conn.execute(T.delete().where(T.c.theme == theme, T.c.source == "discovered"))


# --------------------------------------------------------------------------- catalogue


def theme_catalog(conn: Connection) -> pd.DataFrame:
    """Every theme in force: theme, source (rule | discovered), terms (phrases or top terms)."""
    rows = [
        {"theme": r["theme"], "source": "rule", "terms": r["phrases"], "exclusions": r["exclusions"]}
        for r in current_rules(conn)
    ]
    rows += [
        {"theme": d["theme"], "source": "discovered", "terms": d["terms"], "exclusions": []}
        for d in discovered_themes(conn)
    ]
    return pd.DataFrame(rows, columns=["theme", "source", "terms", "exclusions"])


def theme_names(conn: Connection) -> list[str]:
    """The names of the themes in force (rules first, then discovered), for the theme filter."""
    catalog = theme_catalog(conn)
    return catalog["theme"].tolist()


def pending_comments(conn: Connection) -> int:
    """Stored comments not yet read for themes (imported since the last refresh)."""
    return conn.execute(
        sa.select(sa.func.count())
        .select_from(R)
        .where(commented_clause(), ~sa.exists().where(F.c.response_id == R.c.response_id))
    ).scalar_one()


# --------------------------------------------------------------------------- the stored month sums

TS = schema.theme_sums
_THEME_SUMS = "theme_sums"


def count_if(condition, label: str):
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0).label(label)


def theme_score_sums(with_sentiment: bool = False) -> list:
    """Sums over the responses of a group (joined to their comment's facts ``with_sentiment``):
    n, the NPS answers (nps_w) with promoters and detractors, per pillar the answers ({p}_w) and their
    sum ({p}_s); with the facts, the comments of each sentiment and those in another language."""
    cols = [
        sa.func.count().label("n"),
        sa.func.count(R.c.nps).label("nps_w"),
        count_if(R.c.nps >= 9, "promoters"),
        count_if(R.c.nps <= 6, "detractors"),
    ]
    for p in PILLARS:
        cols.append(sa.func.count(R.c[p]).label(f"{p}_w"))
        cols.append(sa.func.coalesce(sa.func.sum(sa.cast(R.c[p], sa.Double)), 0.0).label(f"{p}_s"))
    if with_sentiment:
        cols += [count_if(F.c.sentiment == s, s) for s in SENTIMENTS]
        cols.append(count_if(sa.not_(F.c.themable), "other_language"))
    return cols


def themed_clause():
    """The response's comment mentions some theme in force (a rule's or a discovered one)."""
    return R.c.response_id.in_(sa.select(T.c.response_id).where(T.c.source.in_(THEME_SOURCES)))


def rebuild_theme_sums(conn: Connection) -> bool:
    """Rebuild the stored month sums of the comment themes (``schema.theme_sums``) inside ``conn``'s
    transaction, from its responses, read comments and themes, marked with the data version: every
    change of the stored themes calls it before it commits, so the rows never lag the themes. False
    on ClickHouse (nothing is built)."""
    if dialects.is_clickhouse(conn):
        return False
    keys = database.month_row_keys()
    group = [k.element for k in keys]
    commented = R.join(F, F.c.response_id == R.c.response_id)
    every = (
        sa.select(
            *keys,
            F.c.language.label("language"),
            sa.literal("").label("theme"),
            *theme_score_sums(with_sentiment=True),
            count_if(themed_clause(), "themed"),
        )
        .select_from(commented)
        .group_by(*group, F.c.language)
    )
    mentions = (
        sa.select(
            *keys,
            sa.literal("").label("language"),
            T.c.theme.label("theme"),
            *theme_score_sums(with_sentiment=True),
            sa.func.count().label("themed"),
        )
        .select_from(commented.join(T, T.c.response_id == R.c.response_id))
        .where(T.c.source.in_(THEME_SOURCES))
        .group_by(*group, T.c.theme)
    )
    rows = sa.union_all(every, mentions)
    with database.rebuilding_derived_in(conn, _THEME_SUMS, (TS,)):
        conn.execute(TS.insert().from_select([c.name for c in every.selected_columns], rows))
    # the sums per segment cell are made from these rows: not read until made again (relq.analyses.
    # themes.save_theme_cells, in the rebuild of the stored tables after a change of the data or the
    # themes, and after the CLI's refresh)
    database.forget_derived(conn, THEME_CELLS)
    return True


def forget_theme_sums(conn: Connection) -> None:
    """Mark the stored month sums of the themes, and their sums per segment cell, as not built: the
    pages read the rows until the next rebuild of the stored tables makes them again. ClickHouse
    keeps none of them: nothing to forget there."""
    if dialects.is_clickhouse(conn):
        return
    database.forget_derived(conn, _THEME_SUMS)
    database.forget_derived(conn, THEME_CELLS)


def save_theme_sums(engine) -> bool:
    """:func:`rebuild_theme_sums` in a transaction of its own, after a change of the stored data (an
    undo, the demo's removal), with the other stored tables the pages read — unless the refresh of
    the themes that follows an import or the demo's load has already rebuilt them."""
    if dialects.is_clickhouse(engine):
        return False
    with engine.begin() as conn:
        database.serialise_imports(conn)
        return theme_sums_ready(conn) or rebuild_theme_sums(conn)


def theme_sums_ready(conn: Connection) -> bool:
    """Whether the stored month sums of the themes are of the current data version and themes."""
    return database.derived_current(conn, _THEME_SUMS)


THEME_CELLS = "segment themes"  # derived_versions' name of schema.segment_themes


def theme_cells_ready(conn: Connection) -> bool:
    """Whether the themes' sums per segment cell (``schema.segment_themes``) are of the current data
    version and themes: every rebuild of the month sums they are made from forgets them."""
    return database.derived_current(conn, THEME_CELLS)

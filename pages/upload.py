"""Upload: bring in survey and CRM exports — detect, map, check, import, undo.

Everything after the file arrives lives in ``review_upload(data, file_name)`` so tests (and the
"Try a sample" choice) can drive it without a browser upload.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import threading
from pathlib import Path

import pandas as pd
import streamlit as st

from relq import ingest, store, ui
from relq.analyses.churn_risk import FITTING_IN_BACKGROUND
from relq.exceptions import ImportRejected, RelqError
from relq.outputs.followup import follow_up_import
from relq.store.cases import supports_cases

ui.framed()  # first: a fresh server's first request is served through the frame


def _load_what_an_import_needs() -> None:
    """The libraries that read a survey import's comments (scikit-learn's text features and NMF,
    VADER's lexicon), loaded while the person chooses a file and reads its check: on a fresh
    server, 1 s of the import's own time otherwise."""
    import sklearn.decomposition  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401
    import sklearn.preprocessing  # noqa: F401

    from relq.ingest import comments

    comments.sentiment(pd.Series(["loaded"]))


if "sklearn.decomposition" not in sys.modules:
    threading.Thread(target=_load_what_an_import_needs, name="relq-import-libraries", daemon=True).start()

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
KIND_LABELS = {
    "auto": "Detect",
    "survey": "Survey",
    "customers": "Customers",
    "transactions": "Transactions",
    "tickets": "Tickets",
}


def _samples() -> list[str]:
    return sorted(p.name for p in SAMPLES.glob("*") if p.suffix in (".csv", ".tsv", ".txt", ".xlsx"))


def _sample_mapping(name: str):
    path = (SAMPLES / name).with_suffix(".mapping.json")
    return str(path) if path.exists() else None


def _prepare(data: bytes, file_name: str, key: str, default_mapping=None):
    """Read, detect, map and validate with the choices made on the page; None when unusable."""
    sheets = ingest.list_sheets(data)
    left, mid, right = st.columns(3)
    kind = left.selectbox(
        "What the file holds", list(KIND_LABELS), format_func=KIND_LABELS.get, key=f"up_kind_{key}"
    )
    sheet = mid.selectbox("Sheet", sheets, key=f"up_sheet_{key}") if len(sheets) > 1 else None
    date_order = right.selectbox(
        "Dates like 03/04/2024",
        ["decide from the data", "dmy", "mdy"],
        format_func=lambda v: {"dmy": "day-first (3 April)", "mdy": "month-first (March 4)"}.get(v, v),
        key=f"up_dates_{key}",
    )
    mapping = st.session_state.get(f"up_mapping_{key}_{kind}", default_mapping)
    # The file is checked once per choice, not on every click: a 1M-row export takes seconds, and the
    # "Import" click would otherwise check it again before writing. An import, undo or instrument
    # edit changes the data version, and the file is checked again under the new one.
    choice = (key, file_name, kind, sheet, date_order, _mapping_key(mapping), ui.data_version())
    held = st.session_state.get("up_prepared")
    if held is not None and held[0] == choice:
        return held[1]
    st.session_state.pop("up_prepared", None)  # one checked file in memory at a time
    progress = st.progress(0.1, text="Reading and validating…")
    try:
        prepared = ingest.prepare_import(
            data,
            file_name=file_name,
            kind=kind,
            mapping=mapping,
            sheet=sheet,
            date_order=None if date_order == "decide from the data" else date_order,
        )
    except ingest.AmbiguousDates as exc:
        progress.empty()
        st.warning(f"{ui.plain(exc)} Choose the order above.")
        return None
    except ImportRejected as exc:
        progress.empty()
        st.error(ui.plain(exc))  # names the file's columns: plain text, never Markdown
        return None
    progress.progress(0.6, text="Checked: ready to import.")
    st.session_state["up_prepared"] = (choice, prepared)
    return prepared


def _mapping_key(mapping) -> str:
    """The mapping a file is checked with, as text (a saved mapping, a file's path, or none)."""
    return mapping.to_json() if isinstance(mapping, ingest.Mapping) else str(mapping)


def _mapping_editor(prepared, key: str) -> None:
    st.subheader("Columns")
    st.caption(
        "Suggested targets come from the column name, the Qualtrics ImportId or the question text "
        "(exact, then fuzzy with its confidence). Change a target to fix it; empty ignores the column."
    )
    table = ingest.mapping_table(prepared)
    options = (
        [""]
        + ingest.targets_for(prepared.kind, prepared.instrument)
        + sorted({t for t in table["target"] if t.startswith("extra:")})
    )
    version = st.session_state.get(f"up_mapver_{key}", 0)
    edited = st.data_editor(
        table,
        key=f"up_map_{key}_{prepared.kind}_{version}",
        hide_index=True,
        width="stretch",
        disabled=["column", "question", "suggested", "confidence"],
        column_config={
            "target": st.column_config.SelectboxColumn("target", options=options),
            "confidence": st.column_config.ProgressColumn(
                "confidence", min_value=0.0, max_value=1.0, format="%.2f"
            ),
        },
    )
    labels = prepared.mapping.labels
    if prepared.kind == "survey":
        label_rows = ingest.label_table(prepared)
        if not label_rows.empty:
            st.subheader("Answer labels")
            st.caption("Answers that are not numbers. Give each a scale point, or say it means no answer.")
            edited_labels = st.data_editor(
                label_rows,
                key=f"up_labels_{key}_{version}",
                hide_index=True,
                disabled=["answer", "rows"],
                column_config={
                    "meaning": st.column_config.SelectboxColumn(
                        "meaning", options=ingest.label_choices(prepared)
                    )
                },
            )
            labels = ingest.labels_from_table(edited_labels)
    mapping = ingest.mapping_from_table(prepared.kind, edited, labels)
    if (
        mapping.to_dict()
        != ingest.mapping_from_table(prepared.kind, table, prepared.mapping.labels).to_dict()
    ):
        st.session_state[f"up_mapping_{key}_{prepared.kind}"] = mapping
        st.session_state[f"up_mapver_{key}"] = version + 1
        st.rerun()
    with st.expander("Save this mapping as a template"):
        name = st.text_input("Template name", key=f"up_tpl_name_{key}")
        if st.button("Save template", key=f"up_tpl_save_{key}", disabled=not name):
            try:
                path = ingest.save_template(name, prepared.mapping)
                st.success(f"Saved {path.name}; the next export with these columns will use it.")
            except (ImportRejected, OSError) as exc:
                st.error(ui.plain(exc))
        ui.audited_download(
            "Download mapping file (JSON)",
            # the mapping alone: the button keeps its function, which must not keep the whole check
            lambda _conn, applied=prepared.mapping: applied.to_json(),
            file_name="mapping.json",
            mime="application/json",
            key=f"up_tpl_dl_{key}",
        )


def review_upload(data: bytes, file_name: str, engine, default_mapping=None) -> None:
    """Everything after a file arrives: detection, mapping, checks, preview, import."""
    key = hashlib.sha1(data).hexdigest()[:12]
    prepared = _prepare(data, file_name, key, default_mapping)
    if prepared is None:
        return
    st.success(
        f"**{ui.plain(file_name)}**: {ui.plain(prepared.detected_format)}; {prepared.rows_total:,} data rows "
        f"read as **{prepared.kind}**."
        + (f" Template applied: {ui.plain(prepared.template)}." if prepared.template else "")
    )
    for message in prepared.messages:
        st.caption(ui.plain(message))
    _mapping_editor(prepared, key)

    rejects = prepared.rejects
    valid = len(prepared.validated.valid)
    st.subheader("Check")
    cols = st.columns(3)
    cols[0].metric("Rows read", f"{prepared.rows_total:,}")
    cols[1].metric("Ready to import", f"{valid:,}")
    cols[2].metric("Rows with problems", f"{prepared.rows_total - valid:,}")
    tab_preview, tab_columns, tab_problems = st.tabs(
        ["Preview as stored", "Column summary", f"Problems ({len(rejects):,})"]
    )
    tab_preview.dataframe(ingest.preview_rows(prepared), width="stretch")
    tab_columns.dataframe(ingest.column_summary(prepared), hide_index=True, width="stretch")
    if rejects.empty:
        tab_problems.write("No problems: every row can be imported.")
    else:
        tab_problems.caption(
            "A row with a problem is not imported; it is kept with its reason in the import "
            "record. Fix the file or the mapping above, or import the rest."
        )
        tab_problems.dataframe(rejects, hide_index=True, width="stretch")
        with tab_problems:
            ui.audited_download(
                "Download problems (CSV)",
                lambda _conn: ingest.rejects_csv(rejects),
                file_name=f"{Path(file_name).stem}-problems.csv",
                mime="text/csv",
                key=f"up_rej_dl_{key}",
                detail={"rows": len(rejects), "columns": [str(c) for c in rejects.columns]},
            )

    if st.button(f"Import {valid:,} rows", type="primary", key=f"up_import_{key}"):
        bar = st.progress(0.7, text="Writing…")
        try:
            result = ingest.store_import(engine, prepared, user=ui.current_user_email())
        except RelqError as exc:
            bar.empty()
            st.error(ui.plain(exc))
            return
        # The file is in (with its own audit row, in its transaction), and the page says so at once.
        # Its check leaves memory (a 1M-row export's is half a gigabyte) before the new comments are
        # read for themes and the case rules and alerts run, and the upload box starts empty for the
        # next file.
        st.session_state.pop("up_prepared", None)
        del prepared
        ingest.release_unused_memory()
        stored = _import_sentence(result)
        steps = (["reading its comments for themes"] if result.kind == "survey" else []) + (
            ["running the case rules and alerts"] if supports_cases(engine) else []
        )
        if steps:
            following = ", then ".join(steps)
            st.success(f"{stored} Now {following}…")
            bar.progress(0.85, text=f"{following.capitalize()}…")
        result = ingest.finish_import(
            engine,
            result,
            user=ui.current_user_email(),
            after=functools.partial(follow_up_import, scores=False),
            # the change recorded below makes every stored table out of date: they are all rebuilt
            # in the background then, the themes' month sums among them (built once, not twice)
            theme_sums=False,
        )
        # before the next element: a visitor who leaves now stops the page at its next element, and
        # the change must still be recorded (today's scores and stored tables rebuilt in the background)
        ui.bump_data_version()
        st.session_state["up_last_result"] = stored
        st.session_state["up_follow_up"] = [FITTING_IN_BACKGROUND, *result.follow_up]  # cases, alerts
        st.session_state["up_uploads"] = st.session_state.get("up_uploads", 0) + 1
        st.rerun()


def _import_sentence(result: ingest.ImportResult) -> str:
    return (
        f"Import {result.import_id}: {result.rows_imported:,} of {result.rows_total:,} rows imported as "
        f"{result.kind}; {result.rows_rejected:,} rejected, {result.rows_duplicate:,} already present, "
        f"{result.rows_unmatched:,} not matched to a customer."
    )


def _after_import(engine) -> None:
    message = st.session_state.get("up_last_result")
    if not message:
        return
    st.success(message)
    for line in st.session_state.get("up_follow_up") or []:
        st.caption(ui.plain(line))
    if store.has_demo(engine):
        st.info("Your own data is in. The demo company is still there and mixes into every number.")
        if st.button("Remove the demo company", key="up_remove_demo"):
            store.remove_demo(engine, user=ui.current_user_email())
            ui.bump_data_version()
            st.session_state["up_last_result"] = message + " The demo company was removed."
            st.rerun()


def _history(engine) -> None:
    st.subheader("Import history")
    history = ingest.import_history(engine)
    if history.empty:
        st.write("No imports yet.")
        return
    st.dataframe(history, hide_index=True, width="stretch")
    own = [int(i) for i, demo in zip(history["import_id"], history["is_demo"], strict=False) if not demo]
    if not own:
        return
    left, right = st.columns([3, 1])
    chosen = left.selectbox("Undo an import (removes every row it added)", own, key="up_undo_choice")
    if right.button("Undo import", key="up_undo"):
        store.undo_import(engine, chosen, user=ui.current_user_email())  # with its audit row
        ui.bump_data_version()
        st.session_state["up_last_result"] = None
        st.success(f"Import {chosen} was undone.")
        st.rerun()
    rejected = ingest.stored_rejects(engine, chosen)
    if not rejected.empty:
        ui.audited_download(
            f"Download the {len(rejected):,} rejected rows of import {chosen} (CSV)",
            lambda _conn: ingest.rejects_csv(rejected),
            file_name=f"import-{chosen}-rejects.csv",
            mime="text/csv",
            key="up_hist_rej_dl",
            detail={"import_id": chosen, "rows": len(rejected)},
        )


engine = ui.get_engine()
ui.require_action("import")  # analysts and admins only
st.title("Upload survey and CRM exports")
st.caption(
    "Qualtrics, SurveyMonkey, Google Forms, Typeform, Microsoft Forms, HubSpot, Salesforce, Zendesk "
    "or plain CSV/TSV/TXT/XLSX tables. Nothing you upload is silently dropped."
)
_after_import(engine)
source = st.radio("File", ["Upload a file", "Try a sample export"], horizontal=True, key="up_source")
try:
    if source == "Upload a file":
        uploaded = st.file_uploader(
            "Survey or CRM export",
            type=["csv", "tsv", "txt", "xlsx"],
            key=f"up_file_{st.session_state.get('up_uploads', 0)}",  # a new box after each import
        )
        if uploaded is not None:
            review_upload(uploaded.getvalue(), uploaded.name, engine)
    else:
        sample = st.selectbox("Sample export", _samples(), key="up_sample")
        if sample:
            review_upload((SAMPLES / sample).read_bytes(), sample, engine, _sample_mapping(sample))
except RelqError as exc:
    st.error(ui.plain(exc))
except Exception as exc:  # noqa: BLE001 - an upload must never show a traceback
    st.error(
        f"This file could not be processed ({type(exc).__name__}: {ui.plain(exc)}). Please report it with the file."
    )
_history(engine)

"""Cases in the dashboard: the "open cases for these customers" widget any customer list calls,
the case editor of the Cases page, and the Admin page's test digest.

Text that came from data (company names, comments, notes) is shown as plain text: through
:func:`plain` when it sits in a sentence, else in tables.
"""

from __future__ import annotations

import re
from datetime import date

import pandas as pd
import streamlit as st

from relq.core.settings import load_settings
from relq.exceptions import CaseConflict, RelqError
from relq.store import cases
from relq.ui.access import can, current_user_email
from relq.ui.session import get_engine

__all__ = [
    "plain",
    "cases_version",
    "bump_cases_version",
    "open_cases_for",
    "my_names",
    "case_editor",
    "case_saved_notice",
    "cases_need_a_row_store",
    "send_test_digest",
]

_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~$:=])")


def plain(text: object) -> str:
    """``text`` with every Markdown character escaped, so st.markdown shows it as it is.

    >>> plain("**Acme** [x](y) :red[z]")
    '\\\\*\\\\*Acme\\\\*\\\\* \\\\[x\\\\]\\\\(y\\\\) \\\\:red\\\\[z\\\\]'
    """
    return _MARKDOWN.sub(r"\\\1", str(text))


def cases_version() -> int:
    """Bumped whenever this session opens or changes cases, so cached case figures are redone."""
    return st.session_state.setdefault("relq_cases_version", 0)


def bump_cases_version() -> None:
    st.session_state["relq_cases_version"] = cases_version() + 1


def _labels(frame: pd.DataFrame) -> dict[str, str]:
    """How each customer is named in the choice: "Company (C000123)", else the customer and the
    start of their comment, else the customer id."""
    who = frame["customer_id"].astype(str)
    labels = who
    if "comment" in frame:
        comment = frame["comment"]
        is_text = comment.map(type).eq(str)
        squashed = comment.where(is_text, "").astype(str).str.split().str.join(" ")
        cut = squashed.str.slice(0, 60) + squashed.str.len().gt(60).map({True: "…", False: ""})
        labels = labels.where(~is_text, who + " — “" + cut + "”")
    if "company" in frame:
        company = frame["company"]
        named = company.map(type).eq(str) & company.astype(str).ne("")
        labels = labels.where(~named, company.astype(str) + " (" + who + ")")
    return dict(zip(who, labels, strict=True))


def open_cases_for(
    customers: pd.DataFrame,
    *,
    reason: str,
    source: str,
    key: str,
    detail_column: str | None = None,
) -> None:
    """Below a customer list: open cases for some or all of its customers, one click.

    ``customers`` needs ``customer_id``; ``company`` or ``comment`` label the choices, and
    ``detail_column`` (e.g. the at-risk reasons, the comment) says why on each case. Shown only
    to roles that work cases; a customer with an open case for the reason gets no second one.
    """
    if not can("work_cases") or customers is None or customers.empty or "customer_id" not in customers:
        return
    frame = customers[customers["customer_id"].notna()].drop_duplicates("customer_id")
    if frame.empty:
        return
    # Computed only once opened: a list may hold tens of thousands of customers.
    box = st.expander(
        f"Open cases for these customers ({len(frame):,})",
        icon=":material/assignment_add:",
        key=f"{key}_box",
        on_change="rerun",
    )
    with box:
        if not box.open:
            return
        labels = _labels(frame)
        everyone = st.radio(
            "Customers",
            ["Choose customers", f"All {len(frame):,} in this list"],
            horizontal=True,
            key=f"{key}_which",
        )
        if everyone == "Choose customers":
            chosen = st.multiselect(
                "Customers to call",
                list(labels),
                format_func=labels.get,
                key=f"{key}_chosen",
                placeholder="Pick customers",
            )
        else:
            chosen = list(labels)
        left, right = st.columns(2)
        keys = list(cases.REASONS)
        picked = left.selectbox(
            "Reason",
            keys,
            index=keys.index(reason) if reason in keys else 0,
            format_func=lambda k: cases.REASONS[k].label,
            key=f"{key}_reason",
        )
        with get_engine().connect() as conn:
            sla = cases.reason_slas(conn)[picked]
        due = cases.business_days_after(date.today(), sla)
        left.caption(
            f"Due {due:%a %d %b %Y}: {sla} business days for this reason. {cases.REASONS[picked].prompt}"
        )
        owner_choice = right.radio(
            "Owner", ["Each customer's CRM owner", "Me", "Someone else"], key=f"{key}_owner_choice"
        )
        owner = None
        if owner_choice == "Me":
            owner = current_user_email()
        elif owner_choice == "Someone else":
            owner = right.text_input("Owner (name or email)", key=f"{key}_owner") or None
        note = st.text_area("Note for whoever calls (optional)", key=f"{key}_note", height=68)
        n = len(chosen)
        if st.button(
            f"Open {n:,} case{'s' if n != 1 else ''}", type="primary", disabled=n == 0, key=f"{key}_open"
        ):
            rows = frame[frame["customer_id"].astype(str).isin(chosen)].copy()
            rows["detail"] = (
                rows[detail_column].astype(str) if detail_column and detail_column in rows else None
            )
            if "response_id" not in rows:
                rows["response_id"] = None
            try:
                opened = cases.open_cases(
                    get_engine(),
                    rows[["customer_id", "detail", "response_id"]],
                    picked,
                    user=current_user_email() or None,
                    source=source,
                    owner=owner,
                    note=note.strip() or None,
                )
            except RelqError as exc:
                st.error(str(exc))
                return
            bump_cases_version()
            st.success(
                opened.sentence(picked) + " Work them on the Cases page.",
                icon=":material/assignment_turned_in:",
            )
            st.page_link("pages/cases.py", label="Go to the Cases page", icon=":material/assignment:")


def my_names() -> set[str]:
    """How cases may name the signed-in person as owner: their email and, when known, their name."""
    names = {current_user_email().strip().lower()}
    try:
        if st.user.is_logged_in and st.user.get("name"):
            names.add(str(st.user.get("name")).strip().lower())
    except (AttributeError, KeyError):
        pass
    return {n for n in names if n}


def cases_need_a_row_store(engine) -> None:
    """On a store that cannot hold cases (ClickHouse) say so and stop the page."""
    if not cases.supports_cases(engine):
        st.info(cases.ROW_STORE_NEEDED, icon=":material/database:")
        st.stop()


def case_saved_notice() -> None:
    """After a save (and the rerun it triggers), say what was saved — even when the filters now
    hide the case (a resolved case leaves the list of open ones)."""
    if message := st.session_state.pop("relq_case_saved", None):
        st.success(plain(message), icon=":material/check_circle:")


def case_editor(engine, case_id: int) -> None:
    """Work one case: status, owner, due date, outcome and a note, saved only when nobody else
    changed the case since it was opened here (else a sentence, and nothing is lost)."""
    seen = st.session_state.setdefault("relq_case_seen", {})
    with engine.connect() as conn:
        case = cases.get_case(conn, case_id)
        history = cases.case_history(conn, case_id)
    if case is None:
        st.warning(f"Case #{case_id} no longer exists.")
        return
    version = seen.setdefault(case_id, int(case["version"]))
    status = case["status"]
    st.markdown(
        f"**Case #{case_id} · {plain(case['company'] or case['customer_id'])}** — "
        f"{plain(cases.REASONS[case['reason']].label if case['reason'] in cases.REASONS else case['reason'])} · "
        f"{cases.STATUS_LABELS.get(status, status)} · owner {plain(case['owner'] or 'nobody')} · "
        f"due {case['due_on']:%d %b %Y}"
    )
    if case["detail"]:
        st.text(case["detail"])
    if case.get("customer_name") or case.get("customer_email"):
        st.text(f"Contact: {case.get('customer_name') or ''} {case.get('customer_email') or ''}".strip())
    if int(case["version"]) != version:
        st.warning(
            f"This case changed since you opened it here ({plain(case['updated_by'] or 'someone')}, "
            f"{case['updated_at']:%H:%M}). Reload it before you change it."
        )
    if not can("work_cases"):
        st.info("Your role can see cases but not work them.")
    else:
        options = [status, *cases.TRANSITIONS[status]]
        outcomes = ["", *cases.OUTCOMES]
        if case["outcome"] and case["outcome"] not in outcomes:
            outcomes.append(case["outcome"])
        with st.form(f"case_form_{case_id}_{version}"):
            a, b, c = st.columns(3)
            new_status = a.selectbox(
                "Status",
                options,
                format_func=lambda s: cases.STATUS_LABELS[s] + (" (now)" if s == status else ""),
                key=f"case_status_{case_id}_{version}",
            )
            new_owner = b.text_input(
                "Owner", value=case["owner"] or "", key=f"case_owner_{case_id}_{version}"
            )
            new_due = c.date_input("Due", value=case["due_on"], key=f"case_due_{case_id}_{version}")
            d, e = st.columns([1, 2])
            new_outcome = d.selectbox(
                "Outcome",
                outcomes,
                index=outcomes.index(case["outcome"]) if case["outcome"] in outcomes else 0,
                format_func=lambda o: o or "(none yet)",
                key=f"case_outcome_{case_id}_{version}",
            )
            own_words = e.text_input(
                "…or the outcome in your words", key=f"case_outcome_text_{case_id}_{version}"
            )
            note = st.text_area("Add a note", key=f"case_note_{case_id}_{version}", height=68)
            saved = st.form_submit_button("Save", type="primary")
        if saved:
            try:
                after = cases.update_case(
                    engine,
                    case_id,
                    version,
                    user=current_user_email() or None,
                    status=new_status,
                    owner=new_owner,
                    due_on=new_due,
                    outcome=own_words.strip() or new_outcome or None,
                    note=note,
                )
            except CaseConflict as exc:
                st.error(str(exc), icon=":material/sync_problem:")
            except RelqError as exc:
                st.error(str(exc))
            else:
                if int(after["version"]) == version:
                    st.info("Nothing to save: the case is as it was.")
                else:
                    seen[case_id] = int(after["version"])
                    bump_cases_version()
                    shown = (
                        "" if after["status"] in cases.OPEN_STATUSES else " (choose that status to list it)"
                    )
                    st.session_state["relq_case_saved"] = (
                        f"Case #{case_id} saved: {cases.STATUS_LABELS[after['status']]}, owner "
                        f"{after['owner'] or 'nobody'}{shown}."
                    )
                    st.rerun()
        if st.button("Reload the case", key=f"case_reload_{case_id}"):
            seen.pop(case_id, None)
            st.rerun()
    with st.expander(f"History of case #{case_id} ({len(history)})"):
        st.dataframe(history, hide_index=True, width="stretch")


def send_test_digest(engine) -> None:
    """Admin page: send the digest now to one address, as the scheduled one would be sent."""
    from relq.outputs.digest import send_digest

    settings = load_settings()
    st.subheader("Digest by email")
    st.caption(
        "The board report by email, filtered to each recipient's role and scope. Schedule it with cron or a "
        "systemd timer running `python -m relq digest --to …` (README → Alerts and digests). "
        + (
            "Mail server: "
            + (settings.smtp.where if settings.smtp else "not configured (set RELQ_SMTP_URL)")
            + "."
        )
    )
    if not can("send_digest") or not cases.supports_cases(engine):
        return
    default = current_user_email() if "@" in current_user_email() else ""
    to = st.text_input(
        "Send a test digest to", value=default, key="admin_digest_to", placeholder="name@example.com"
    )
    if st.button("Send a test digest", key="admin_digest_send", disabled=not to.strip()):
        with st.spinner("Building the board report and sending it…"):
            run = send_digest(engine, [to], user=current_user_email() or None, settings=settings)
        for line in run.lines():
            (st.success if run.ok else st.warning)(plain(line))
        if not run.ok:
            st.error(plain(run.problem()))

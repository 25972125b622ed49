"""Cases: the customers someone has to call — mine, overdue, all — worked to an outcome; the counts
by owner and reason; whether the calls worked; and the rules that open cases after each import."""

from datetime import date

import streamlit as st

from relq import ui
from relq.analyses import cases as case_rules
from relq.exceptions import RelqError
from relq.store import cases
from relq.store.filters import SegmentFilter

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
flt = ui.current_filter()
today = date.today()


@st.cache_data(ttl=ui.CACHE_TTL, max_entries=16, show_spinner=False)
def _effects(_engine, url: str, flt: SegmentFilter, version: int, cases_version: int):
    with _engine.connect() as conn:
        return case_rules.case_effects(conn, flt)


st.title("Cases")
ui.cases_need_a_row_store(engine)
st.caption(
    "The customers someone has to call, from any customer list (Gap quadrants, Retention → At risk, Voice of "
    "the customer) or opened by the rules after each import. Each is due by its reason's SLA in business days "
    "and moves open → contacted → resolved or no answer. The sidebar's segments apply here; its survey period "
    "does not (cases have their own dates)."
)
with engine.connect() as conn:
    by_reason = cases.case_counts(conn, flt, "reason", today)

if not ui.personal_columns_visible():  # executives: counts, never names
    shown = ui.suppress_small_groups(by_reason, "customers")
    totals = cases.case_totals(shown)
    cols = st.columns(5)
    for col, (name, value) in zip(cols, totals.items(), strict=True):
        col.metric(name.capitalize(), f"{value:,}")
    if shown.empty:
        st.info("No case counts to show for these segments.")
    else:
        st.dataframe(shown.drop(columns=["customers"]), hide_index=True, width="stretch")
    st.caption(
        "Executives see case counts by reason; who the customers are and who calls them stays with CX leads."
    )
    st.stop()

totals = cases.case_totals(by_reason)
cols = st.columns(5)
for col, (name, value) in zip(cols, totals.items(), strict=True):
    col.metric(name.capitalize(), f"{value:,}")
ui.case_saved_notice()

with engine.connect() as conn:
    mine = cases.owns_cases(conn, ui.my_names())
view = st.radio(
    "Show", ["My cases", "Overdue", "All cases"], index=0 if mine else 2, horizontal=True, key="cases_view"
)
f1, f2, f3, f4 = st.columns(4)
statuses = f1.multiselect(
    "Status",
    list(cases.STATUSES),
    default=list(cases.OPEN_STATUSES),
    format_func=cases.STATUS_LABELS.get,
    key="cases_status",
)
reasons = f2.multiselect(
    "Reason", list(cases.REASONS), format_func=lambda k: cases.REASONS[k].label, key="cases_reason"
)
with engine.connect() as conn:
    owners = f3.multiselect("Owner", cases.case_owners(conn), key="cases_owner")
search = f4.text_input("Search", key="cases_search", placeholder="company, customer id or words")
with engine.connect() as conn:
    table = cases.case_table(
        conn,
        flt,
        statuses=statuses,
        reasons=reasons,
        owners=owners,
        owned_by=ui.my_names() if view == "My cases" else (),
        overdue_only=view == "Overdue",
        search=search,
        today=today,
    )
if table.empty:
    if view == "My cases":
        st.info(
            f"No case with these filters is assigned to you ({ui.plain(', '.join(sorted(ui.my_names())))}). "
            "Choose **All cases**, or pick an owner."
        )
    else:
        st.info("No case matches these filters.")
else:
    st.caption(f"{len(table):,} case{'s' if len(table) != 1 else ''}, newest first; click a column to sort.")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_order=[
            "case_id",
            "company",
            "customer_id",
            "reason",
            "status",
            "owner",
            "due_on",
            "days_overdue",
            "opened_at",
            "outcome",
            "detail",
        ],
        column_config={
            "case_id": st.column_config.NumberColumn("Case", format="#%d"),
            "company": "Company",
            "customer_id": "Customer",
            "reason": "Reason",
            "status": "Status",
            "owner": "Owner",
            "outcome": "Outcome",
            "due_on": st.column_config.DateColumn("Due", format="YYYY-MM-DD"),
            "days_overdue": st.column_config.NumberColumn("Days overdue"),
            "opened_at": st.column_config.DatetimeColumn("Opened", format="YYYY-MM-DD HH:mm"),
            "detail": st.column_config.TextColumn("Why", width="large"),
        },
    )
    ui.download_csv(
        table.drop(columns=["version", "reason_key", "status_key"]),
        f"cases-{view.lower().replace(' ', '-')}.csv",
        "Download these cases (CSV)",
        key="cases_download",
    )

    st.subheader("Work a case")
    labels = {
        int(r.case_id): f"#{r.case_id} · {r.company or r.customer_id} · {r.reason} · {r.status}"
        for r in table.itertuples()
    }
    chosen = st.selectbox("Case", list(labels), format_func=labels.get, key="cases_chosen")
    ui.case_editor(engine, int(chosen))

# Only the open tab computes: "Did it work" matches every closed case against comparable customers.
by_owner_tab, effect_tab, rules_tab = st.tabs(
    ["By owner and reason", "Did it work", "Rules"], key="cases_tab", on_change="rerun"
)

with by_owner_tab:
    left, right = st.columns(2)
    left.markdown("**By reason**")
    left.dataframe(by_reason, hide_index=True, width="stretch")
    with engine.connect() as conn:
        by_owner = cases.case_counts(conn, flt, "owner", today)
    right.markdown("**By owner**")
    right.dataframe(by_owner, hide_index=True, width="stretch")
    ui.download_csv(
        by_owner, "cases-by-owner.csv", "Download counts by owner (CSV)", key="cases_owner_download"
    )
    st.caption(
        "Overdue: open or contacted past the due date. Customers: distinct customers behind the cases."
    )

with effect_tab:
    if effect_tab.open:
        effects = _effects(engine, str(engine.url), flt, ui.data_version(), ui.cases_version())
        st.markdown(
            f"**{effects.closed:,} closed cases.** Each contacted customer is compared with customers who never had a "
            "case and, on the contact day, had the same plan and, in their latest answer before it, the same trust × "
            "satisfaction quadrant, NPS group and 10-point RQ band. The difference is the contacted customer minus the "
            "mean of their comparison customers, averaged over cases; 95% intervals treat each customer as a cluster."
        )
        st.info(case_rules.EFFECT_CAVEAT, icon=":material/science:")
        if not effects.compared:
            st.write(
                "No closed case can be compared yet: it needs an answer before the contact and one after it."
            )
        else:
            st.dataframe(
                effects.table,
                hide_index=True,
                width="stretch",
                column_config={
                    name: st.column_config.NumberColumn(name.capitalize(), format="%.1f")
                    for name in ("contacted", "comparable", "difference", "low", "high")
                }
                | {"p": st.column_config.NumberColumn("p", format="%.3f")},
            )
            ui.download_csv(
                effects.table, "did-it-work.csv", "Download the comparison (CSV)", key="cases_effect_download"
            )
        left_out = {k: v for k, v in effects.left_out.items() if v}
        if left_out:
            st.caption("Not compared: " + "; ".join(f"{v:,} — {k}" for k, v in left_out.items()) + ".")

with rules_tab:
    editable = ui.can("edit_rules")
    st.markdown(
        "After each import these rules open cases for what it brought — never a second open case for the same "
        "customer and reason. " + ("" if editable else "Analysts and admins change them.")
    )
    with engine.connect() as conn:
        settings = case_rules.rule_settings(conn)
        slas = cases.reason_slas(conn)
    for key, rule in case_rules.RULES.items():
        enabled, params = settings[key]
        with st.form(f"case_rule_{key}"):
            st.markdown(f"**{rule.label}** — opens *{cases.REASONS[rule.reason].label.lower()}* cases")
            st.caption(rule.help)
            on = st.checkbox("On", value=enabled, disabled=not editable, key=f"rule_on_{key}")
            new = dict(params)
            if key == "detractor_comment":
                new["max_nps"] = st.number_input(
                    "max_nps", 0, 10, int(params["max_nps"]), disabled=not editable, key=f"rule_{key}_nps"
                )
            elif key == "high_value_at_risk":
                a, b = st.columns(2)
                new["value_tiers"] = a.multiselect(
                    "value_tiers",
                    ["Top 20%", "Middle 50%", "Bottom 30%"],
                    default=[
                        t for t in params["value_tiers"] if t in ("Top 20%", "Middle 50%", "Bottom 30%")
                    ],
                    disabled=not editable,
                    key=f"rule_{key}_tiers",
                )
                minimum = b.number_input(
                    "min_annual_value (0 = not used)",
                    min_value=0.0,
                    value=float(params["min_annual_value"] or 0.0),
                    step=1000.0,
                    disabled=not editable,
                    key=f"rule_{key}_value",
                )
                new["min_annual_value"] = minimum or None
            else:
                a, b, c = st.columns(3)
                pillars = ["trust", "commitment", "satisfaction"]
                new["x"] = a.selectbox(
                    "x", pillars, pillars.index(params["x"]), disabled=not editable, key=f"rule_{key}_x"
                )
                new["y"] = b.selectbox(
                    "y", pillars, pillars.index(params["y"]), disabled=not editable, key=f"rule_{key}_y"
                )
                new["threshold"] = c.number_input(
                    "threshold",
                    0.0,
                    100.0,
                    float(params["threshold"]),
                    disabled=not editable,
                    key=f"rule_{key}_t",
                )
            if st.form_submit_button("Save the rule", disabled=not editable):
                try:
                    case_rules.save_rule_settings(engine, key, on, new, ui.current_user_email() or None)
                except RelqError as exc:
                    st.error(str(exc))
                else:
                    st.success(f"Saved: {rule.label} is {'on' if on else 'off'}.")
    with st.form("case_slas"):
        st.markdown(
            "**SLA per reason** (business days from opening to due; applies to cases opened from now on)"
        )
        columns = st.columns(4)
        chosen_slas = {
            key: columns[i % 4].number_input(
                reason.label, 0, 60, int(slas[key]), disabled=not editable, key=f"sla_{key}"
            )
            for i, (key, reason) in enumerate(cases.REASONS.items())
        }
        if st.form_submit_button("Save the SLAs", disabled=not editable):
            changed = [k for k, v in chosen_slas.items() if int(v) != int(slas[k])]
            for key in changed:
                cases.set_reason_sla(engine, key, int(chosen_slas[key]), ui.current_user_email() or None)
            st.success(f"Saved {len(changed)} SLA change(s)." if changed else "Nothing changed.")
    st.page_link(
        "pages/alerts.py", label="Alert rules are on the Alerts page", icon=":material/notifications:"
    )

"""Alerts: rules on any score and segment, evaluated after each import and by
``python -m relq alerts run``; what fired; and the outbox of every mail and webhook call."""

import streamlit as st

from relq import ui
from relq.analyses import alerts
from relq.core.settings import load_settings
from relq.exceptions import RelqError
from relq.outputs.alerting import run_alerts
from relq.outputs.delivery import deliver_pending
from relq.store import catalog, outbox

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
settings = load_settings()
editable = ui.can("edit_rules")
user = ui.current_user_email() or None

st.title("Alerts")
ui.cases_need_a_row_store(engine)
st.caption(
    "An alert rule watches one score for all customers or one segment over a rolling window ending on the latest "
    "survey day, and fires **once per change** — with the number, its 95% interval and a link to the filtered "
    "view — by email and/or a Slack-compatible webhook. Rules run after each import and whenever "
    "`python -m relq alerts run` runs (schedule it with cron or a systemd timer). "
    f"Mail server: {settings.smtp.where if settings.smtp else 'not configured (RELQ_SMTP_URL)'}; "
    f"links start with {ui.plain(settings.public_url)}."
)

with engine.connect() as conn:
    rules = alerts.list_rules(conn)
    table = alerts.rules_table(conn)
    dimensions = catalog.dimensions(conn)

left, right = st.columns(2)
if left.button("Run the alerts now", key="alerts_run", disabled=not rules):
    with st.spinner("Evaluating every rule and delivering what fired…"):
        run = run_alerts(engine, user=user, settings=settings)
    for line in run.lines():
        st.write(ui.plain(line))
    if not run.ok:
        st.error(ui.plain(run.problem()))
if right.button("Deliver waiting messages now", key="alerts_deliver"):
    report = deliver_pending(engine, user=user, settings=settings)
    (st.success if report.ok else st.error)(ui.plain(report.summary()))

st.subheader("Rules")
if table.empty:
    st.info("No alert rule yet." + (" Add one below." if editable else " Analysts and admins add them."))
else:
    st.dataframe(table, hide_index=True, width="stretch")

if editable:
    st.subheader("Add or change a rule")
    labels = {None: "A new rule", **{r.rule_id: f"#{r.rule_id} {r.name}" for r in rules}}
    chosen_id = st.selectbox("Rule", list(labels), format_func=labels.get, key="alerts_chosen")
    current = next((r for r in rules if r.rule_id == chosen_id), None) or alerts.AlertRule(
        name="", metric="nps", condition="falls"
    )
    suffix = chosen_id or "new"
    a, b = st.columns(2)
    name = a.text_input(
        "Name", value=current.name, key=f"alert_name_{suffix}", placeholder="Enterprise NPS falls"
    )
    metric = b.selectbox(
        "Score",
        list(alerts.METRICS),
        index=list(alerts.METRICS).index(current.metric),
        format_func=alerts.METRICS.get,
        key=f"alert_metric_{suffix}",
    )
    c, d = st.columns(2)
    dims = ["", *dimensions]
    dimension = c.selectbox(
        "Segment",
        dims,
        index=dims.index(current.dimension) if current.dimension in dims else 0,
        format_func=lambda x: "All customers" if not x else x.replace("_", " ").capitalize(),
        key=f"alert_dim_{suffix}",
    )
    value = None
    if dimension:
        with engine.connect() as conn:
            values = catalog.dimension_values(conn, dimension)
        value = d.selectbox(
            "Value",
            values,
            index=values.index(current.value) if current.value in values else 0,
            key=f"alert_value_{suffix}_{dimension}",
        )
    e, f, g = st.columns(3)
    conditions = list(alerts.CONDITIONS)
    condition = e.selectbox(
        "Condition",
        conditions,
        index=conditions.index(current.condition),
        format_func=alerts.CONDITIONS.get,
        key=f"alert_condition_{suffix}",
    )
    threshold = None
    if condition in ("below", "above"):
        threshold = f.number_input(
            "Number",
            value=float(current.threshold if current.threshold is not None else 60.0),
            key=f"alert_t_{suffix}",
        )
    window = g.number_input(
        "Window (days)",
        min_value=7,
        max_value=366,
        value=int(current.window_days),
        key=f"alert_window_{suffix}",
    )
    recipients = st.text_area(
        "Recipients: email addresses (they need a role in the roles file) and webhook URLs, one per line",
        value="\n".join(current.recipients),
        key=f"alert_recipients_{suffix}",
        height=90,
    )
    enabled = st.checkbox("On", value=current.enabled, key=f"alert_enabled_{suffix}")
    save, delete = st.columns([1, 5])
    if save.button("Save the rule", type="primary", key=f"alert_save_{suffix}"):
        try:
            rule_id = alerts.save_rule(
                engine,
                alerts.AlertRule(
                    name=name,
                    metric=metric,
                    condition=condition,
                    threshold=threshold,
                    dimension=dimension or None,
                    value=value,
                    window_days=int(window),
                    recipients=alerts.parse_recipients(recipients),
                    enabled=enabled,
                    rule_id=chosen_id,
                ),
                user,
            )
        except RelqError as exc:
            st.error(str(exc))
        else:
            st.success(
                f"Saved rule #{rule_id}. It fires the next time the alerts run and its condition holds."
            )
    if chosen_id is not None and delete.button("Delete the rule", key=f"alert_delete_{suffix}"):
        alerts.delete_rule(engine, chosen_id, user)
        st.rerun()

st.subheader("What fired")
with engine.connect() as conn:
    fired = alerts.alert_events(conn)
    queue = outbox.outbox_table(conn)
if fired.empty:
    st.write("Nothing has fired yet.")
else:
    st.dataframe(fired, hide_index=True, width="stretch")

st.subheader("Outbox")
st.caption(
    "Every mail and webhook call waits here until it went through. A failed one stays pending with its reason and "
    "is retried by the next run; a sent one is never sent again. Webhook addresses show only their host."
)
if queue.empty:
    st.write("Nothing has been sent yet.")
else:
    st.dataframe(queue, hide_index=True, width="stretch")

"""The digest: the board report by email, filtered to each recipient's role and scope.

``python -m relq digest --to EMAIL…`` (and the Admin page's test button) looks each recipient up
in the roles file. A recipient without a role gets nothing, and one line says so. The others get
an HTML mail — the headline scores with intervals and deltas, and the cases (counts per reason;
for CX leads, analysts and admins also the overdue cases by customer) — with the full board report
attached (the HTML file of the Overview page, charts included, opens offline).

- **Scope**: a recipient limited in the roles file (``[scopes]``, e.g. one region) gets numbers
  for that part of the customer base only.
- **Executives** never receive a customer's name: no case list, and no segment, case count or
  scope resting on fewer than 5 customers.

Scheduling is the operator's: cron or a systemd timer (README → Alerts and digests).
"""

from __future__ import annotations

import html
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from relq.core import auth
from relq.core.settings import Settings, load_settings
from relq.outputs import board_report, mail
from relq.outputs.charts import format_number
from relq.outputs.delivery import DeliveryReport, deliver_pending
from relq.store import cases, outbox, record_audit, schema
from relq.store.filters import SegmentFilter, customer_dimension

__all__ = ["DigestRun", "digest_parts", "send_digest"]

R = schema.survey_responses
OVERDUE_SHOWN = 20


@dataclass
class DigestRun:
    queued: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one sentence per recipient who got nothing
    delivery: DeliveryReport | None = None

    @property
    def ok(self) -> bool:
        return not self.refused and (self.delivery is None or self.delivery.ok)

    def lines(self) -> list[str]:
        out = [f"Digest queued for {email}." for email in self.queued] + list(self.refused)
        if self.delivery is not None:
            out.append(self.delivery.summary())
        return out

    def problem(self) -> str:
        problems = list(self.refused[:1])
        if len(self.refused) > 1:
            problems[0] += f" (and {len(self.refused) - 1} more recipient(s) without a digest)"
        if self.delivery is not None and not self.delivery.ok:
            problems.append(self.delivery.problem())
        return " ".join(problems)


def _customers_in(conn: Connection, flt: SegmentFilter) -> int:
    return conn.execute(
        sa.select(sa.func.count(sa.distinct(R.c.customer_id))).where(
            flt.response_clause(), R.c.customer_id.is_not(None)
        )
    ).scalar_one()


def _small_segments(conn: Connection, periods: board_report.Periods) -> set[tuple[str, str]]:
    """(dimension, value) of the segments with fewer than 5 responding customers in either period."""
    small: set[tuple[str, str]] = set()
    for flt in (periods.current, periods.previous):
        if flt is None:
            continue
        for dimension in board_report.MOVER_DIMENSIONS:
            value = customer_dimension(dimension).label("value")
            rows = conn.execute(
                sa.select(value, sa.func.count(sa.distinct(R.c.customer_id)).label("customers"))
                .select_from(R.join(schema.customers, schema.customers.c.customer_id == R.c.customer_id))
                .where(flt.response_clause())
                .group_by(value)
            ).all()
            small |= {(dimension, str(r.value)) for r in rows if r.customers < auth.MIN_GROUP_CUSTOMERS}
    return small


def _table(frame: pd.DataFrame) -> str:
    head = "".join(
        f"<th style='text-align:left;padding:4px 8px'>{html.escape(str(c))}</th>" for c in frame.columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td style='padding:4px 8px;border-top:1px solid #E4E7EB'>{html.escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return (
        f"<table style='border-collapse:collapse'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _kpi_frame(kpis: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in kpis.itertuples():
        digits = 0 if r.metric == "nps" else 1
        delta = (
            ""
            if math.isnan(r.delta)
            else f"{r.delta:+.{digits}f}" + (" (significant)" if r.significant else "")
        )
        rows.append(
            {
                "Score": r.label,
                "Value": format_number(r.estimate, digits) + (" (small sample)" if r.small else ""),
                "95% CI": f"{format_number(r.low, digits)} – {format_number(r.high, digits)}",
                "n": f"{int(r.n):,}",
                "Δ vs previous": delta,
            }
        )
    return pd.DataFrame(rows)


def digest_parts(
    conn: Connection, email: str, role: str, scope: auth.Scope, *, settings: Settings, now: datetime
) -> dict:
    """Subject, text, HTML and the attached board report for one recipient (no personal data for
    executives). Raises ValueError with a sentence when an executive's scope is too small."""
    flt = SegmentFilter(customer=scope)
    if role == "executive" and _customers_in(conn, flt) < auth.MIN_GROUP_CUSTOMERS:
        raise ValueError(
            f"{email}'s scope ({auth.describe_scope(scope)}) holds fewer than {auth.MIN_GROUP_CUSTOMERS} "
            "responding customers; an executive digest would identify them, so nothing was sent."
        )
    kpis, periods, _ = board_report.overview_kpis(conn, flt)
    small = _small_segments(conn, periods) if role == "executive" else set()

    def drop_small(moves: pd.DataFrame) -> pd.DataFrame:
        keep = [(d, str(v)) not in small for d, v in zip(moves["dimension"], moves["value"], strict=True)]
        return moves[keep]

    minimum = auth.MIN_GROUP_CUSTOMERS if role == "executive" else 0  # every figure, not only the moves
    report = board_report.board_report_html(
        conn, flt, now, minimum, moves_filter=drop_small if small else None
    )
    counts = cases.case_counts(conn, flt, "reason", now.date())
    counts, hidden = auth.suppress_small_groups(counts, role, "customers")
    counts = counts.drop(columns=["customers"])
    overdue = pd.DataFrame()
    if auth.can_see_personal_data(role):
        listed = cases.case_table(conn, flt, statuses=cases.OPEN_STATUSES, today=now.date())
        overdue = listed[listed["overdue"]].sort_values("days_overdue", ascending=False)
    scope_text = auth.describe_scope(scope)
    label = auth.ROLE_LABELS[role]
    link = settings.public_url
    subject = f"RelQ digest — {periods.description} — {scope_text}"
    lines = [
        f"Relationship quality digest for {email} ({label}; {scope_text}).",
        f"Period: {periods.description}. Generated {now:%d %b %Y %H:%M}.",
        "",
        "Headline scores (value, 95% CI, n, change vs the previous period):",
    ]
    kpi_frame = _kpi_frame(kpis)
    lines += [
        f"- {r['Score']}: {r['Value']} [{r['95% CI']}], n = {r['n']}, {r['Δ vs previous'] or 'no change measured'}"
        for _, r in kpi_frame.iterrows()
    ]
    lines += ["", "Cases by reason (open, overdue, contacted, resolved, no answer):"]
    lines += [
        f"- {r['reason']}: {r['open']} open, {r['overdue']} overdue, {r['contacted']} contacted, "
        f"{r['resolved']} resolved, {r['no answer']} no answer"
        for _, r in counts.iterrows()
    ] or ["- no cases"]
    if hidden:
        lines.append(
            f"({hidden} reason(s) with fewer than {auth.MIN_GROUP_CUSTOMERS} customers are not shown.)"
        )
    overdue_html = ""
    if auth.can_see_personal_data(role):
        shown = overdue.head(OVERDUE_SHOWN)[
            ["case_id", "company", "reason", "owner", "due_on", "days_overdue"]
        ]
        shown = shown.rename(columns={"case_id": "case", "due_on": "due", "days_overdue": "days overdue"})
        lines += ["", f"Overdue cases: {len(overdue):,}"]
        lines += [
            f"- #{r.case} {r.company} — {r.reason}, owner {r.owner}, due {r.due}" for r in shown.itertuples()
        ]
        overdue_html = (
            f"<h3>Overdue cases ({len(overdue):,})</h3>"
            + (_table(shown) if len(shown) else "<p>None: every open case is within its SLA.</p>")
            + (f"<p>The {OVERDUE_SHOWN} most overdue are listed.</p>" if len(overdue) > OVERDUE_SHOWN else "")
        )
    lines += [
        "",
        f"Cases: {link}/cases",
        f"Dashboard: {link}/",
        "The full board report is attached (opens offline in any browser).",
    ]
    body = (
        '<!doctype html><html><body style="font-family: Helvetica, Arial, sans-serif; color:#1F2933; max-width: 760px">'
        '<h1 style="color:#1F3B57">Relationship quality — digest</h1>'
        f'<p style="color:#52606D">For {html.escape(email)} ({html.escape(label)}; {html.escape(scope_text)}). '
        f"Period: {html.escape(periods.description)}. Generated {now:%d %b %Y %H:%M}.</p>"
        "<h2>Headline scores</h2>"
        + _table(kpi_frame)
        + '<p style="color:#52606D;font-size:0.9em">Every score carries its n and 95% interval; a change is called '
        "significant only at Benjamini–Hochberg q &lt; 0.05.</p><h2>Cases</h2>"
        + (_table(counts) if len(counts) else "<p>No cases.</p>")
        + (
            f'<p style="color:#52606D">{hidden} reason(s) with fewer than {auth.MIN_GROUP_CUSTOMERS} customers are not shown.</p>'
            if hidden
            else ""
        )
        + overdue_html
        + f'<p><a href="{html.escape(link)}/cases">Open the Cases page</a> · <a href="{html.escape(link)}/">Open the dashboard</a></p>'
        "<p>The full board report, with its charts, is attached: it opens in any browser, offline.</p>"
        "</body></html>"
    )
    return {
        "subject": subject,
        "text": "\n".join(lines) + "\n",
        "html": body,
        "attachment": (f"relq-board-report-{now:%Y-%m-%d}.html", "text/html", report.encode("utf-8")),
    }


def send_digest(
    engine: Engine,
    recipients: list[str],
    *,
    user: str | None,
    settings: Settings | None = None,
    roles: auth.RoleMap | None = None,
    now: datetime | None = None,
    deliver: bool = True,
) -> DigestRun:
    """Queue one digest per recipient who has a role (each with its audit record), then deliver."""
    cases.require_row_store(engine)
    settings = settings or load_settings()
    roles = roles if roles is not None else auth.load_roles(settings.roles_path)
    now = now or datetime.now()
    run = DigestRun()
    for email in dict.fromkeys(e.strip().lower() for e in recipients if e.strip()):
        role = auth.role_for(email, roles)
        if role is None:
            run.refused.append(
                f"{email} has no role in the roles file ({settings.roles_path}), so no digest was sent to them."
            )
            continue
        scope = auth.scope_for(email, roles)
        with engine.begin() as conn:
            try:
                parts = digest_parts(conn, email, role, scope, settings=settings, now=now)
            except ValueError as exc:
                run.refused.append(str(exc))
                continue
            key = f"digest:{email}:{now:%Y%m%d%H%M%S}:{uuid.uuid4().hex[:8]}"
            message = mail.build_message(
                sender=settings.mail_from,
                to=email,
                subject=parts["subject"],
                text=parts["text"],
                html=parts["html"],
                attachments=(parts["attachment"],),
                message_key=key,
            )
            outbox.enqueue(
                conn,
                kind="digest",
                channel="email",
                target=email,
                subject=parts["subject"],
                payload=message,
                dedupe_key=key,
                user=user,
                now=now,
            )
            record_audit(
                conn,
                user,
                "digest",
                {"to": email, "role": role, "scope": auth.describe_scope(scope), "subject": parts["subject"]},
            )
        run.queued.append(email)
    if deliver:
        run.delivery = deliver_pending(engine, user=user, settings=settings, now=now)
    return run

"""The digest, received by a real SMTP server on loopback (aiosmtpd) and parsed: the board report
filtered to each recipient's role and scope — an executive never receives a customer's or a staff
member's name, a regional lead only their region, a recipient without a role nothing."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from smtp_server import MailBox, text_of

from relq import store
from relq.cli import main
from relq.core import auth
from relq.core.settings import load_settings
from relq.outputs import board_report
from relq.outputs.digest import send_digest
from relq.store import cases, schema
from relq.store.filters import SegmentFilter

ROLES = """
[users]
"cfo@example.com" = "executive"
"head.of.cx@example.com" = "cx_lead"
"lead.emea@example.com" = "cx_lead"
"board.atlantis@example.com" = "executive"
[scopes]
"lead.emea@example.com" = { region = "EMEA" }
"board.atlantis@example.com" = { region = "Atlantis" }
"""


@pytest.fixture(scope="module")
def mailbox():
    box = MailBox().start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def sent(duckdb_demo, mailbox, tmp_path_factory):
    """One digest run to four recipients and one stranger, on the demo company."""
    path = tmp_path_factory.mktemp("roles") / "roles.toml"
    path.write_text(ROLES, encoding="utf-8")
    settings = load_settings({"RELQ_SMTP_URL": f"smtp://127.0.0.1:{mailbox.port}", "RELQ_ROLES": str(path)})
    run = send_digest(
        duckdb_demo,
        [
            "cfo@example.com",
            "head.of.cx@example.com",
            "lead.emea@example.com",
            "board.atlantis@example.com",
            "stranger@example.org",
        ],
        user="cli:test",
        settings=settings,
        roles=auth.load_roles(path),
    )
    return run


def _personal_data(engine) -> set[str]:
    """Every customer name, contact name, email and company, and every staff (owner) name."""
    c = schema.customers.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.name, c.email, c.company, c.owner)).all()
        owners = conn.execute(sa.select(schema.cases.c.owner).distinct()).scalars().all()
    return {v for row in rows for v in row if v} | {o for o in owners if o}


def test_a_recipient_without_a_role_gets_nothing_and_one_line_says_so(sent, mailbox):
    assert sent.queued == ["cfo@example.com", "head.of.cx@example.com", "lead.emea@example.com"]
    assert any("stranger@example.org has no role in the roles file" in line for line in sent.refused)
    assert not mailbox.to("stranger@example.org")
    assert sent.delivery.ok and len(sent.delivery.sent) == 3


def test_an_executive_digest_carries_the_board_report_and_no_personal_data(sent, mailbox, duckdb_demo):
    (message,) = mailbox.to("cfo@example.com")
    assert message["Subject"].startswith("RelQ digest — ")
    assert message.get_body(("html",)) is not None and message.get_body(("plain",)) is not None
    (report,) = list(message.iter_attachments())
    assert re.fullmatch(r"relq-board-report-\d{4}-\d{2}-\d{2}\.html", report.get_filename())
    assert "Relationship quality — board report" in report.get_content()
    text = text_of(message)
    assert "Headline scores" in text and "95% CI" in text and "Cases" in text
    assert "Overdue cases" not in text  # counts, not a list
    leaked = sorted(v for v in _personal_data(duckdb_demo) if v in text)
    assert not leaked, leaked[:10]


def test_an_executive_whose_scope_would_identify_customers_gets_nothing(sent, mailbox):
    assert not mailbox.to("board.atlantis@example.com")
    assert any("fewer than 5 responding customers" in line for line in sent.refused)


def test_a_cx_lead_digest_lists_the_overdue_cases_by_customer(sent, mailbox, duckdb_demo):
    (message,) = mailbox.to("head.of.cx@example.com")
    text = message.get_body(("plain",)).get_content()
    with duckdb_demo.connect() as conn:
        overdue = cases.case_table(conn, overdue_only=True).sort_values("days_overdue", ascending=False)
    assert f"Overdue cases: {len(overdue):,}" in text
    assert overdue["company"].iloc[0] in text


def test_a_regional_lead_gets_their_region_only(sent, mailbox, duckdb_demo):
    (message,) = mailbox.to("lead.emea@example.com")
    assert "region: EMEA" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    with duckdb_demo.connect() as conn:
        emea, _, _ = board_report.overview_kpis(conn, SegmentFilter().with_dimension("region", ["EMEA"]))
        everyone, _, _ = board_report.overview_kpis(conn, SegmentFilter())
        region_of = dict(conn.execute(sa.select(schema.customers.c.company, schema.customers.c.region)).all())
    rq = emea.set_index("metric").loc["rq"]
    assert f"Relationship quality (RQ): {rq['estimate']:.1f}" in text and f"n = {int(rq['n']):,}" in text
    assert f"n = {int(everyone.set_index('metric').loc['rq', 'n']):,}" not in text
    listed = re.findall(r"^- #\d+ (.+?) — ", text, flags=re.M)
    assert listed and {region_of[c] for c in listed} == {"EMEA"}


def test_every_digest_and_send_is_in_the_audit_log(sent, duckdb_demo):
    log = store.audit_log(duckdb_demo)
    digests = log[log["action"] == "digest"]
    assert len(digests) == 3 and digests["detail"].str.contains('"role"').all()
    sends = log[(log["action"] == "send") & log["detail"].str.contains('"kind": "digest"')]
    assert len(sends) == 3


def test_the_cli_digest_exits_non_zero_with_one_line_for_a_recipient_without_a_role(
    duckdb_demo, mailbox, monkeypatch, tmp_path, capsys
):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES, encoding="utf-8")
    monkeypatch.setenv("RELQ_DATABASE_URL", str(duckdb_demo.url))
    monkeypatch.setenv("RELQ_SMTP_URL", f"smtp://127.0.0.1:{mailbox.port}")
    monkeypatch.setenv("RELQ_ROLES", str(path))
    before = len(mailbox.messages)
    assert main(["digest", "--to", "nobody@example.net"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"relq: nobody@example.net has no role in the roles file ({path}), so no digest was sent to them."
    ]
    assert len(mailbox.messages) == before
    assert main(["digest", "--to", "cfo@example.com"]) == 0
    assert len(mailbox.messages) == before + 1

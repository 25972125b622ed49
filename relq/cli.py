"""``python -m relq demo | import | report --json | themes --json | risk --json | alerts run | digest |
check`` — the same functions the pages call.

Errors a user can fix end with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import sys
import time
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from relq import store
from relq.exceptions import RelqError
from relq.store.filters import DEFAULT_RAKE, WEIGHT_SCHEMES
from relq.store.schema import PILLARS

__all__ = ["main", "build_parser"]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD") from None


def _dimensions(text: str) -> tuple[str, ...]:
    dims = tuple(d.strip() for d in text.split(",") if d.strip())
    if not dims or len(set(dims)) != len(dims):
        raise argparse.ArgumentTypeError(f"{text!r}: name one or more different dimensions, e.g. region,plan")
    return dims


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m relq", description="RelQ: relationship quality from CRM data and surveys."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="(Re)build the demo company in the configured database.")
    demo.add_argument("--customers", type=int, default=12_000, help="customers to generate (default 12000)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--chunk",
        type=int,
        default=250_000,
        help="customers generated and stored at a time: a larger company is streamed to the database "
        "chunk by chunk (default 250000; the 2,000,000-customer huge tier needs about 4 GB)",
    )

    imp = commands.add_parser("import", help="Import a survey or CRM export.")
    imp.add_argument("path", type=Path)
    imp.add_argument(
        "--kind", default="auto", choices=["auto", "survey", "customers", "transactions", "tickets"]
    )
    imp.add_argument("--mapping", type=Path, help="mapping file (JSON) as saved by the Upload page")
    imp.add_argument(
        "--date-order", choices=["dmy", "mdy", "ymd"], help="how to read dates like 03/04/2025 when unclear"
    )

    check = commands.add_parser(
        "check", help="Check that the dashboard may start: sign-in cookie secret, loopback without sign-in."
    )
    check.add_argument("--secrets", type=Path, help="secrets file (default .streamlit/secrets.toml)")
    check.add_argument("--config", type=Path, help="Streamlit config file (default .streamlit/config.toml)")

    report = commands.add_parser("report", help="Print the headline numbers.")
    report.add_argument("--json", action="store_true", help="print JSON (the only format)")
    report.add_argument("--since", type=_date, help="first submission date, inclusive (YYYY-MM-DD)")
    report.add_argument("--until", type=_date, help="last submission date, inclusive (YYYY-MM-DD)")
    report.add_argument("--by", help="segment dimension, e.g. region, plan, industry, value_tier")
    report.add_argument("--x", default="trust", choices=PILLARS, help="quadrant x pillar")
    report.add_argument("--y", default="satisfaction", choices=PILLARS, help="quadrant y pillar")
    report.add_argument("--threshold", type=float, default=50.0, help="quadrant threshold (0-100)")
    report.add_argument(
        "--weight",
        default="response",
        choices=WEIGHT_SCHEMES,
        help="count each response (default), each customer, each customer's annual value, or customers "
        "raked to the customer base",
    )
    report.add_argument(
        "--rake",
        type=_dimensions,
        default=DEFAULT_RAKE,
        help="dimensions to rake on with --weight raked, comma-separated (default region,plan)",
    )

    alerts = commands.add_parser(
        "alerts", help="Evaluate the alert rules and deliver what fired (and anything still queued)."
    )
    alerts.add_argument("action", choices=["run"], help="run: evaluate every rule, then deliver")

    digest = commands.add_parser(
        "digest", help="Send the board report by email, filtered to each recipient's role and scope."
    )
    digest.add_argument(
        "--to",
        nargs="+",
        required=True,
        metavar="EMAIL",
        help="recipients (each needs a role in the roles file)",
    )

    themes = commands.add_parser(
        "themes", help="Print the comment themes: share, NPS with vs without, impact."
    )
    themes.add_argument("--json", action="store_true", help="print JSON (the only format)")
    themes.add_argument("--since", type=_date, help="first submission date, inclusive (YYYY-MM-DD)")
    themes.add_argument("--until", type=_date, help="last submission date, inclusive (YYYY-MM-DD)")
    themes.add_argument(
        "--k", type=int, help="discover this many themes (2-40; runs discovery again when it differs)"
    )
    risk = commands.add_parser("risk", help="Print the churn-risk backtest and each active customer's score.")
    risk.add_argument("--json", action="store_true", help="print JSON (the only format)")
    risk.add_argument(
        "--horizon", type=int, default=90, help="days ahead the probability of churning covers (default 90)"
    )
    return parser


def _clean(value):
    """JSON without NaN: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _demo(args) -> int:
    from relq.ingest.demo import build_demo_streamed

    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"  {done:,} of {total:,} customers ({time.perf_counter() - started:.0f} s)", flush=True)

    engine = store.get_engine()
    counts = build_demo_streamed(
        engine, customers=args.customers, seed=args.seed, chunk=args.chunk, progress=progress
    )
    print(
        f"Demo company loaded in {time.perf_counter() - started:.1f} s: {counts.customers:,} customers, "
        f"{counts.transactions:,} transactions, {counts.tickets:,} tickets, "
        f"{counts.responses:,} survey responses."
    )
    from relq.analyses.churn_risk import refresh_scores

    started = time.perf_counter()
    print(f"{refresh_scores(engine)} ({time.perf_counter() - started:.1f} s)")
    return 0


def _import(args) -> int:
    from relq.ingest import import_file
    from relq.outputs.followup import follow_up_import

    mapping = None
    if args.mapping:
        try:
            mapping = json.loads(args.mapping.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RelqError(f"{args.mapping}: cannot read the mapping file ({exc}).") from None
    if not args.path.is_file():
        raise RelqError(f"{args.path}: no such file.")
    engine = store.get_engine()
    store.create_schema(engine)
    result = import_file(
        engine,
        args.path.read_bytes(),
        file_name=args.path.name,
        kind=args.kind,
        mapping=mapping,
        date_order=args.date_order,
        user=_cli_user(),
        after=follow_up_import,
    )
    print(
        f"{args.path.name}: imported {result.rows_imported:,} of {result.rows_total:,} rows as {result.kind} "
        f"({result.detected_format}); {result.rows_rejected:,} rejected, {result.rows_duplicate:,} already "
        f"present, {result.rows_unmatched:,} unmatched to a customer. Import id {result.import_id}."
    )
    for line in result.follow_up:
        print(line)
    return 0


def _report(args) -> int:
    from relq.outputs.report import ReportRequest, build_report

    if args.x == args.y:
        raise RelqError(f"--x and --y must be two different pillars (both are {args.x}).")
    engine = store.get_engine()
    store.create_schema(engine)
    request = ReportRequest(
        args.since, args.until, args.by, args.x, args.y, args.threshold, args.weight, args.rake
    )
    print(json.dumps(_clean(build_report(engine, request)), indent=2, default=str))
    return 0


def _alerts(args) -> int:
    from relq.outputs.alerting import run_alerts

    engine = store.get_engine()
    store.create_schema(engine)
    return _delivered(run_alerts(engine, user=_cli_user()))


def _digest(args) -> int:
    from relq.outputs.digest import send_digest

    engine = store.get_engine()
    store.create_schema(engine)
    return _delivered(send_digest(engine, args.to, user=_cli_user()))


def _delivered(run) -> int:
    """Print what a run of the alerts or the digest sent; exit 1 with its problem when one failed."""
    for line in run.lines():
        print(line)
    if not run.ok:
        print(f"relq: {run.problem()}", file=sys.stderr)
        return 1
    return 0


def _themes(args) -> int:
    from relq.analyses.themes import save_theme_cells, themes_report
    from relq.ingest.themes import refresh_themes
    from relq.store.filters import SegmentFilter

    if args.k is not None and not 2 <= args.k <= 40:
        raise RelqError(f"--k must be between 2 and 40 themes, not {args.k}.")
    engine = store.get_engine()
    store.create_schema(engine)
    refresh_themes(engine, k=args.k, user=_cli_user())  # reads comments not read yet; cheap otherwise
    save_theme_cells(
        engine
    )  # the dashboard's sums per segment cell, made again when the refresh changed them
    with engine.connect() as conn:
        report = themes_report(conn, SegmentFilter(since=args.since, until=args.until))
    print(json.dumps(_clean(report), indent=2, default=str))
    return 0


def _risk(args) -> int:
    from relq.analyses import churn_risk

    if not 7 <= args.horizon <= 730:
        raise RelqError(f"--horizon must be between 7 and 730 days, not {args.horizon}.")
    engine = store.get_engine()
    store.create_schema(engine)
    with engine.connect() as conn:
        result = churn_risk.assess(conn, horizon=args.horizon)
    if result.message:
        print(f"relq: {result.message}", file=sys.stderr)
    print(json.dumps(_clean(result.as_dict()), indent=2, default=str))
    return 0


def _check(args) -> int:
    from relq.core import deployment

    problem = deployment.check_files(
        args.secrets or deployment.SECRETS_FILE, args.config or deployment.CONFIG_FILE
    )
    if problem:
        raise RelqError(problem)
    print(
        "RelQ may start: "
        + (
            "sign-in is configured safely."
            if (args.secrets or deployment.SECRETS_FILE).is_file()
            else "local single-user mode, on loopback only."
        )
    )
    return 0


def _cli_user() -> str:
    """Who ran the command, for the imports record and the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {
            "demo": _demo,
            "import": _import,
            "report": _report,
            "themes": _themes,
            "risk": _risk,
            "alerts": _alerts,
            "digest": _digest,
            "check": _check,
        }
        return commands[args.command](args)
    except RelqError as exc:
        print(f"relq: {exc}", file=sys.stderr)
        return 2
    except sa.exc.OperationalError as exc:  # the database went away or is held by another process
        print(f"relq: {store.explain_connection_error(exc, store.get_engine())}", file=sys.stderr)
        return 2
    except sa.exc.DBAPIError as exc:  # any other refusal by the database: one line, never a traceback
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        print(f"relq: the database refused the operation ({reason}); nothing was changed.", file=sys.stderr)
        return 2

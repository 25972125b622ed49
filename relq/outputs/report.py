"""The ``report --json`` document (README → Command line): headline numbers for a period.

Each section is computed by the module that owns its numbers, from the same functions the
pages call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.engine import Engine

from relq.measures import metrics
from relq.store.filters import DEFAULT_RAKE, SegmentFilter, Weighting

__all__ = ["ReportRequest", "build_report"]


@dataclass(frozen=True)
class ReportRequest:
    since: date | None = None
    until: date | None = None
    by: str | None = None
    x: str = "trust"
    y: str = "satisfaction"
    threshold: float = 50.0
    weight: str = "response"
    rake: tuple[str, ...] = DEFAULT_RAKE


def build_report(engine: Engine, request: ReportRequest = ReportRequest()) -> dict:
    """The whole JSON report for ``request``: every score with n (responses), customers (the
    clusters of its customer-clustered interval) and, for NPS and CSAT, n_eff; ``weight`` says how
    each response counts (``--weight``)."""
    flt = SegmentFilter(
        since=request.since, until=request.until, weighting=Weighting(request.weight, request.rake)
    )
    with engine.connect() as conn:
        head = metrics.headline(conn, flt)
        report = head.as_dict()
        if head.weighting_note():
            report["weight_note"] = head.weighting_note()
        if flt.weighting.scheme == "raked":
            report["raking"] = _raking(conn, flt)
        _add_reliability(conn, flt, report)
        if request.by:
            from relq.measures.comparisons import segment_breakdown

            report["segments"] = segment_breakdown(conn, flt, request.by).as_report()
        report["quadrants"] = _quadrants(conn, flt, request)
        report["cohorts"] = _cohorts(conn, flt)
        report["retention"] = _retention(conn, flt)
        report["period"] = {
            "since": request.since.isoformat() if request.since else None,
            "until": request.until.isoformat() if request.until else None,
        }
    return report


def _raking(conn, flt: SegmentFilter) -> dict:
    """Target vs achieved margins, the weight range and Kish's design effect of the raked weights."""
    from relq.measures.customer_sums import weight_plan

    outcome = next(iter(weight_plan(conn, flt).rakes.values()))
    diag = outcome.diagnostics
    if diag is None:
        return {"dimensions": list(flt.weighting.rake), "problem": outcome.problem}
    return {
        "dimensions": list(flt.weighting.rake),
        "kish_deff": diag.kish_deff,
        "weight_min": diag.weight_min,
        "weight_max": diag.weight_max,
        "iterations": diag.iterations,
        "margins": diag.margins.to_dict("records"),
    }


def _quadrants(conn, flt: SegmentFilter, request: ReportRequest) -> dict:
    """Customers per gap quadrant for --x, --y and --threshold (latest response per customer)."""
    from relq.analyses.quadrants import report_section

    return report_section(conn, flt, request.x, request.y, request.threshold)


def _add_reliability(conn, flt: SegmentFilter, report: dict) -> None:
    """Each pillar's Cronbach's alpha (and its Feldt interval) from the stored answers."""
    from relq.core.instrument import configured_instrument
    from relq.measures.reliability import reliability

    result = reliability(conn, flt, configured_instrument())
    for pillar, alpha in result.alpha.items():
        detail = alpha.as_dict()
        report["pillars"][pillar]["alpha"] = detail["alpha"]
        report["pillars"][pillar]["alpha_ci"] = detail["ci"]
        report["pillars"][pillar]["alpha_n"] = detail["n"]


def _cohorts(conn, flt: SegmentFilter) -> dict:
    """Acquisition cohorts and their monthly active shares, complete months only (Methodology
    page → Cohorts)."""
    from relq.analyses.retention import cohort_activity, cohort_report

    return cohort_report(cohort_activity(conn, flt))


def _retention(conn, flt: SegmentFilter) -> dict | None:
    """Retention of the last complete calendar quarter (Methodology page → Retention rate)."""
    from relq.analyses.retention import retention_report

    return retention_report(conn, flt)

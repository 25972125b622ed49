"""The ``report --json`` document (README → Command line): headline numbers for a period.

Each section is computed by the module that owns its numbers, from the same functions the
pages call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.engine import Engine

from relq.measures import metrics
from relq.store.filters import SegmentFilter

__all__ = ["ReportRequest", "build_report"]


@dataclass(frozen=True)
class ReportRequest:
    since: date | None = None
    until: date | None = None
    by: str | None = None
    x: str = "trust"
    y: str = "satisfaction"
    threshold: float = 50.0


def build_report(engine: Engine, request: ReportRequest = ReportRequest()) -> dict:
    """The whole JSON report for ``request``."""
    flt = SegmentFilter(since=request.since, until=request.until)
    with engine.connect() as conn:
        report = metrics.headline(conn, flt).as_dict()
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

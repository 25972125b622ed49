"""What follows an import: today's churn-risk scores are fitted and saved, the case rules open
cases for what it brought, the alert rules are evaluated, and whatever waits in the outbox is
delivered.

The CLI's ``import`` and the Upload page hand :func:`follow_up_import` to the importer
(``relq.ingest.write_import(..., after=follow_up_import)``), which runs it once the import is
committed; its sentences join the import's own.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from relq.analyses.cases import apply_case_rules
from relq.analyses.churn_risk import refresh_scores
from relq.outputs.alerting import run_alerts
from relq.store.cases import supports_cases

__all__ = ["follow_up_import"]


def follow_up_import(
    engine: Engine, import_id: int, user: str | None = None, *, scores: bool = True
) -> list[str]:
    """Save today's churn-risk scores (the Retention page then reads them instead of fitting the
    model on its first visit), run the case rules for ``import_id``, then the alerts; one sentence
    per thing done. Without ``scores`` the caller fits them itself: the Upload page does, in the
    background (minutes on a store of millions), once it has recorded its own data change."""
    messages = [refresh_scores(engine)] if scores else []
    if not supports_cases(engine):
        return messages  # ClickHouse holds no cases or alert state (relq.store.cases.ROW_STORE_NEEDED)
    messages += [result.sentence() for result in apply_case_rules(engine, import_id)]
    run = run_alerts(engine, user=user)
    messages += [line for line in run.lines() if not line.startswith("Nothing was waiting")]
    return messages

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
from relq.analyses.churn_risk import refresh_scores, refresh_scores_in_background
from relq.outputs.alerting import run_alerts
from relq.store.cases import supports_cases

__all__ = ["follow_up_import"]


def follow_up_import(
    engine: Engine, import_id: int, user: str | None = None, *, background: bool = False
) -> list[str]:
    """Save today's churn-risk scores (the Retention page then reads them instead of fitting the
    model on its first visit), run the case rules for ``import_id``, then the alerts; one sentence
    per thing done. With ``background`` (the Upload page) the scores are fitted in a thread of
    their own — minutes on a store of millions — and the page answers at once."""
    if background:
        refresh_scores_in_background(engine)
        messages = [
            "Today's churn-risk scores are being fitted in the background; the Retention page reads "
            "them once they are saved."
        ]
    else:
        messages = [refresh_scores(engine)]
    if not supports_cases(engine):
        return messages  # ClickHouse holds no cases or alert state (relq.store.cases.ROW_STORE_NEEDED)
    messages += [result.sentence() for result in apply_case_rules(engine, import_id)]
    run = run_alerts(engine, user=user)
    messages += [line for line in run.lines() if not line.startswith("Nothing was waiting")]
    return messages

"""Two people on one case at the same moment, on a real PostgreSQL server: no update is lost, the
second save gets a sentence, and one customer never gets two open cases for one reason."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from loop_data import import_customers

from relq.exceptions import CaseConflict
from relq.store import cases, schema


def _together(work, n: int) -> list:
    """Run ``work(i)`` on ``n`` threads released at the same moment; return results or errors."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the assertions show what happened
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_two_people_saving_one_case_at_once_one_wins_the_other_is_told_and_nothing_is_lost(postgres_engine):
    import_customers(postgres_engine, [{"customer_id": "C1", "owner": "Sarah"}])
    (case_id,) = cases.open_cases(postgres_engine, ["C1"], "at_risk", user="x", source="test").opened
    edits = [
        {"user": "ana@example.com", "status": "contacted", "note": "Ana called"},
        {"user": "ben@example.com", "owner": "Ben", "note": "Ben takes it"},
    ]
    # both read version 1, then save at the same moment
    results = _together(lambda i: cases.update_case(postgres_engine, case_id, 1, **edits[i]), 2)
    won = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, CaseConflict)]
    assert len(won) == 1 and len(refused) == 1, results
    assert "Reload the case" in str(refused[0])
    with postgres_engine.connect() as conn:
        case = cases.get_case(conn, case_id)
        notes = [
            n for n in cases.case_history(conn, case_id)["detail"] if n in ("Ana called", "Ben takes it")
        ]
    assert case["version"] == 2 and len(notes) == 1
    # the one who was told reloads and saves again: both changes stand
    loser = edits[results.index(refused[0])]
    cases.update_case(postgres_engine, case_id, 2, **loser)
    with postgres_engine.connect() as conn:
        case = cases.get_case(conn, case_id)
        notes = {n for n in cases.case_history(conn, case_id)["detail"]}
    assert case["version"] == 3 and {"Ana called", "Ben takes it"} <= notes
    assert (case["status"], case["owner"]) == ("contacted", "Ben")


def test_eight_people_each_adding_a_note_with_retry_on_conflict_lose_none(postgres_engine):
    import_customers(postgres_engine, [{"customer_id": "C1"}])
    (case_id,) = cases.open_cases(postgres_engine, ["C1"], "comment", user="x", source="test").opened

    def add_note(i: int) -> int:
        conflicts = 0
        while True:
            with postgres_engine.connect() as conn:
                version = cases.get_case(conn, case_id)["version"]
            try:
                cases.update_case(postgres_engine, case_id, version, user=f"u{i}", note=f"note {i}")
                return conflicts
            except CaseConflict:
                conflicts += 1  # what the page does: reload, save again

    conflicts = _together(add_note, 8)
    assert not [c for c in conflicts if isinstance(c, Exception)], conflicts
    with postgres_engine.connect() as conn:
        case = cases.get_case(conn, case_id)
        notes = set(cases.case_history(conn, case_id)["detail"])
    assert case["version"] == 9
    assert {f"note {i}" for i in range(8)} <= notes
    print(f"8 concurrent editors: {sum(conflicts)} conflicts told and retried, 0 updates lost")


def test_two_people_opening_cases_for_the_same_customers_at_once_open_each_case_once(postgres_engine):
    customers = [{"customer_id": f"C{i}"} for i in range(40)]
    import_customers(postgres_engine, customers)
    ids = [c["customer_id"] for c in customers]
    results = _together(
        lambda i: cases.open_cases(postgres_engine, ids, "detractor", user=f"u{i}", source="test"), 3
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(len(r.opened) for r in results) == 40
    assert sum(len(r.already_open) for r in results) == 80
    with postgres_engine.connect() as conn:
        stored = conn.execute(sa.select(schema.cases.c.customer_id)).scalars().all()
    assert sorted(stored) == sorted(ids)

"""Two imports at the same time on a real PostgreSQL server lose and duplicate nothing."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from relq.ingest import import_file
from relq.store import schema


def _csv(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _run_together(engine, files: list[tuple[str, bytes]]) -> list:
    """Start every import at the same moment, each on its own thread; return results or errors."""
    barrier = threading.Barrier(len(files))
    results: list = [None] * len(files)

    def work(i: int, name: str, data: bytes) -> None:
        barrier.wait()
        try:
            results[i] = import_file(engine, data, file_name=name)
        except Exception as exc:  # noqa: BLE001 - the assertion below shows what went wrong
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i, *f)) for i, f in enumerate(files)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _ids(engine, column) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(column)).scalars())


CUSTOMERS_HEADER = "customer_id,name,email,region,plan,acquired_at"


def _customers(ids: range) -> list[str]:
    return [f"C{i},Customer {i},c{i}@example.com,EU,Pro,2024-01-{1 + i % 28:02d}" for i in ids]


def test_two_overlapping_customer_imports_at_once_store_each_customer_once(postgres_engine):
    first = _csv(CUSTOMERS_HEADER, _customers(range(0, 3000)))
    second = _csv(CUSTOMERS_HEADER, _customers(range(2000, 5000)))  # 1,000 customers in both files
    results = _run_together(postgres_engine, [("first.csv", first), ("second.csv", second)])
    assert not [r for r in results if isinstance(r, Exception)], results
    stored = _ids(postgres_engine, schema.customers.c.customer_id)
    assert len(stored) == len(set(stored)) == 5000
    assert sorted(r.rows_imported for r in results) in ([2000, 3000], [3000, 2000])
    assert sum(r.rows_imported + r.rows_duplicate for r in results) == 6000
    with postgres_engine.connect() as conn:
        imports = conn.execute(sa.select(sa.func.count()).select_from(schema.imports)).scalar_one()
    assert imports == 2


def test_the_same_survey_file_imported_twice_at_once_lands_once(postgres_engine):
    header = "response_id,submitted_at,nps,csat,ces,trust_1,trust_2,trust_3"
    rows = [
        f"R{i},2025-03-{1 + i % 28:02d} 10:00,{i % 11},{1 + i % 5},{1 + i % 7},5,6,4" for i in range(4000)
    ]
    data = _csv(header, rows)
    results = _run_together(postgres_engine, [("a.csv", data), ("b.csv", data), ("c.csv", data)])
    assert not [r for r in results if isinstance(r, Exception)], results
    stored = _ids(postgres_engine, schema.survey_responses.c.response_id)
    assert len(stored) == len(set(stored)) == 4000
    assert sorted(r.rows_imported for r in results) == [0, 0, 4000]
    with postgres_engine.connect() as conn:
        answers = conn.execute(sa.select(sa.func.count()).select_from(schema.survey_answers)).scalar_one()
    assert answers == 4000 * 3

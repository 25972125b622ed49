"""Small, hand-made companies for the tests of cases, alerts and digests (imported by those tests).

Customers and survey answers go in through the real importer, as an analyst's files would.
A pillar "level" v (1–7) answers every item of the pillar v (reverse-keyed items 8 − v), so the
pillar index is exactly 100·(v − 1)/6.
"""

from __future__ import annotations

import socket

from relq.ingest import import_file

ITEMS = {
    "trust": ("trust_1", "trust_2", "trust_3", "trust_4"),
    "commitment": ("commitment_1", "commitment_2", "commitment_3", "commitment_4"),
    "satisfaction": ("satisfaction_1", "satisfaction_2", "satisfaction_3"),
}
REVERSED = {"trust_4", "commitment_4", "satisfaction_3"}
CUSTOMER_HEADER = "customer_id,name,email,company,region,plan,owner,acquired_at,churned_at,annual_value"


def index_of(level: int) -> float:
    return 100 * (level - 1) / 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def customers_csv(rows: list[dict]) -> bytes:
    lines = [CUSTOMER_HEADER]
    for r in rows:
        cid = r["customer_id"]
        lines.append(
            ",".join(
                str(x)
                for x in (
                    cid,
                    r.get("name", f"Person {cid}"),
                    r.get("email", f"{cid.lower()}@{cid.lower()}.example"),
                    r.get("company", f"Company {cid}"),
                    r.get("region", "EMEA"),
                    r.get("plan", "Pro"),
                    r.get("owner", "Olga Owner"),
                    r.get("acquired_at", "2024-01-15"),
                    r.get("churned_at", ""),
                    r.get("annual_value", 10000),
                )
            )
        )
    return ("\n".join(lines) + "\n").encode()


def survey_csv(rows: list[dict]) -> bytes:
    """rows: response_id, customer_id, submitted_at, nps, comment (optional), and pillar levels
    trust / commitment / satisfaction (default 5)."""
    items = [i for pillar in ITEMS.values() for i in pillar]
    lines = [",".join(["response_id", "customer_id", "submitted_at", "nps", "comment", *items])]
    for r in rows:
        answers = []
        for pillar, ids in ITEMS.items():
            level = int(r.get(pillar, 5))
            answers += [str(8 - level if i in REVERSED else level) for i in ids]
        comment = str(r.get("comment", "")).replace('"', '""')
        lines.append(
            ",".join(
                [
                    r["response_id"],
                    r["customer_id"],
                    r["submitted_at"],
                    str(r["nps"]),
                    f'"{comment}"',
                    *answers,
                ]
            )
        )
    return ("\n".join(lines) + "\n").encode()


def import_customers(engine, rows: list[dict], name: str = "customers.csv", after=None):
    return import_file(engine, customers_csv(rows), file_name=name, kind="customers", after=after)


def import_survey(engine, rows: list[dict], name: str = "survey.csv", after=None):
    return import_file(engine, survey_csv(rows), file_name=name, kind="survey", after=after)


def import_transactions(engine, rows: list[tuple[str, str, float]], name: str = "orders.csv", after=None):
    lines = ["transaction_id,customer_id,occurred_at,amount"]
    lines += [f"T{i},{c},{at},{amount}" for i, (c, at, amount) in enumerate(rows)]
    data = ("\n".join(lines) + "\n").encode()
    return import_file(engine, data, file_name=name, kind="transactions", after=after)

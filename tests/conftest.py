"""Shared fixtures: a real PostgreSQL server on loopback, ClickHouse in-process (chDB), and an
``engine`` on DuckDB, PostgreSQL and ClickHouse.

The PostgreSQL server is started once per test session with ``initdb`` into a temporary folder
(as the ``postgres`` user when the tests run as root). chDB is the ClickHouse engine itself, run
in this process from one folder per test session (chDB opens one folder per process), each
store a database inside it. No mocks: store tests run on all three engines.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from relq import store
from relq.ingest.demo import load_demo
from relq.store import schema

os.environ.setdefault("RELQ_DEMO_CUSTOMERS", "1500")

# Property tests are deterministic (the same examples on every run, so CI cannot turn red by
# chance) and have no per-example deadline (a busy 2-core CI machine is not a failure).
hypothesis_settings.register_profile("relq", deadline=None, derandomize=True, print_blob=True)
hypothesis_settings.load_profile("relq")


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None
    )
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} was not found: install the Debian package postgresql "
            "(the README's test command does this)."
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_url():
    """Start a throw-away PostgreSQL server on 127.0.0.1 and yield a URL to its admin database."""
    if url := os.environ.get("RELQ_TEST_POSTGRES_URL"):
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="relq-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "relq", "-A", "trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(base / "log"),
                "start",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://relq@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


_db_numbers = itertools.count()


@pytest.fixture
def postgres_engine(postgres_url):
    """A fresh, empty PostgreSQL database with RelQ's schema."""
    name = f"relq_test_{os.getpid()}_{next(_db_numbers)}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    store.create_schema(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def duckdb_engine(tmp_path):
    """A fresh, empty DuckDB file with RelQ's schema."""
    engine = store.get_engine(f"duckdb:///{tmp_path / 'relq.duckdb'}")
    store.create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def chdb_folder(tmp_path_factory):
    """The one chDB folder of this test session."""
    return tmp_path_factory.mktemp("chdb") / "relq.chdb"


def chdb_url(folder, name: str) -> str:
    return f"chdb:///{folder}?database={name}"


@pytest.fixture
def chdb_engine(chdb_folder):
    """A fresh, empty ClickHouse (chDB) database with RelQ's schema."""
    url = chdb_url(chdb_folder, f"relq_test_{next(_db_numbers)}")
    engine = store.get_engine(url)
    store.create_schema(engine)
    yield engine
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "DROP DATABASE IF EXISTS " + conn.exec_driver_sql("SELECT currentDatabase()").scalar()
        )
    engine.dispose()


@pytest.fixture(params=["duckdb", "postgres", "chdb"])
def engine(request):
    """The same test on the embedded DuckDB store, a real PostgreSQL server and ClickHouse (chDB)."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture
def statements():
    """The SQL each connection sends while the test runs (SQLAlchemy's own event, no stand-in)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


DEMO_CUSTOMERS = 1500
DEMO_SEED = 11


@pytest.fixture(scope="session")
def demo_company():
    """A small demo company (1,500 customers, seed 11), generated once per test session."""
    from relq.ingest.demo import generate_demo

    return generate_demo(customers=DEMO_CUSTOMERS, seed=DEMO_SEED)


@pytest.fixture(scope="session")
def demo_db_url(tmp_path_factory, demo_company):
    """A DuckDB file holding the small demo company, shared read-mostly by page tests."""
    path = tmp_path_factory.mktemp("demo") / "relq.duckdb"
    engine = store.get_engine(f"duckdb:///{path}")
    load_demo(engine, demo_company)
    engine.dispose()
    return f"duckdb:///{path}"


@pytest.fixture(scope="module")
def duckdb_demo(tmp_path_factory, demo_company):
    """A DuckDB engine on a private copy of the demo company, one per test module."""
    engine = store.get_engine(f"duckdb:///{tmp_path_factory.mktemp('demo_module') / 'relq.duckdb'}")
    load_demo(engine, demo_company)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def demo_postgres_url(postgres_url, demo_company):
    """A PostgreSQL database holding the small demo company, shared read-mostly by page tests."""
    name = f"relq_demo_{os.getpid()}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    engine = sa.create_engine(url)
    load_demo(engine, demo_company)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def demo_chdb_url(chdb_folder, demo_company):
    """A ClickHouse (chDB) database holding the small demo company, shared read-mostly by page tests."""
    url = chdb_url(chdb_folder, "relq_demo")
    engine = store.get_engine(url)
    load_demo(engine, demo_company)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def chdb_demo(chdb_folder, demo_company):
    """A ClickHouse (chDB) engine on a private copy of the demo company, one per test module."""
    engine = store.get_engine(chdb_url(chdb_folder, f"relq_demo_{next(_db_numbers)}"))
    load_demo(engine, demo_company)
    yield engine
    engine.dispose()


@pytest.fixture
def demo_env(demo_db_url, monkeypatch):
    """Point RelQ (pages, CLI) at the shared demo database for one test."""
    monkeypatch.setenv("RELQ_DATABASE_URL", demo_db_url)
    return demo_db_url


@pytest.fixture
def table_counts():
    """``table_counts(engine)``: rows in every table an import writes, by table name."""
    tables = (*store.DATA_TABLES, schema.imports, schema.import_rejects)

    def counts(engine) -> dict[str, int]:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables
            }

    return counts


@pytest.fixture
def empty_store_env(tmp_path, monkeypatch):
    """Point RelQ at a store with one import and no rows: it "has data", so no demo is built."""
    url = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    with engine.begin() as conn:
        store.new_import(conn, file_name="nothing.csv", file_hash="x", kind="survey")
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    return url


class Downloads(dict):
    """Files behind the download buttons a page drew, by file name. A download is made when it is
    fetched (the button's click in a browser): reading ``downloads[name]`` makes it, as Streamlit
    does for the browser — audit row included."""

    def __init__(self):
        super().__init__()
        self.pending: dict[str, object] = {}

    def __missing__(self, name: str) -> bytes:
        data = self.pending[name]()  # as Streamlit's execute_deferred does when the browser asks
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def __contains__(self, name) -> bool:
        return dict.__contains__(self, name) or name in self.pending


@pytest.fixture
def downloads(monkeypatch):
    """Every file a page offers for download, by file name (the bytes the browser would get)."""
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files = Downloads()
    original = MemoryMediaFileStorage.load_and_get_id
    original_deferred = MediaFileManager.add_deferred

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            dict.__setitem__(files, filename, path_or_data)
        return original(self, path_or_data, mimetype, kind, filename)

    def record_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        if file_name:
            files.pending[file_name] = data_callable
        return original_deferred(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)
    return files

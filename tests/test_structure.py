"""The house: packages mirror the architecture and imports flow one way.

Read from the source with ``ast`` (every import, also those inside functions): no import circle
between relq's modules, streamlit only in ``relq/ui`` (and in ``app.py`` and the pages), each
layer imports only the layers below it, and ``pages/`` holds the pages of the navigation and
nothing else — Streamlit lists any file there as a page until ``st.navigation`` has run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RELQ = ROOT / "relq"

# Lower layers first; a module may import its own layer and the layers listed before it.
LAYERS = ("exceptions", "core", "store", "ingest", "measures", "analyses", "outputs", "ui", "cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from relq import ui`` gives ``relq.ui``)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _relq_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(RELQ.rglob("*.py"))}


def _graph() -> dict[str, set[str]]:
    modules = _relq_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # the longest known module the import names (relq.store.schema, else relq.store)
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported != "relq":
                targets.add(imported)
        graph[name] = targets
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "relq"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None (depth-first search).

    A package's ``__init__`` re-exporting its own modules is not a circle with them.
    """
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package importing its own submodule
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_relq_has_no_import_circle():
    assert _cycle(_graph()) is None, f"import circle: {' → '.join(_cycle(_graph()))}"


def test_the_circle_finder_finds_a_planted_circle():
    planted = {"relq.a": {"relq.b"}, "relq.b": {"relq.c"}, "relq.c": {"relq.a"}, "relq.d": set()}
    assert _cycle(planted) == ["relq.a", "relq.b", "relq.c", "relq.a"]


def test_only_the_ui_package_imports_streamlit():
    offenders = [
        name
        for name, path in _relq_modules().items()
        if _layer(name) != "ui"
        and any(i == "streamlit" or i.startswith("streamlit.") for i in _imports(path))
    ]
    assert not offenders, f"streamlit imported outside relq/ui: {offenders}"


def test_every_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, targets in _graph().items():
        here = _layer(name)
        if here not in LAYERS:  # relq/__init__.py, relq/__main__.py
            continue
        for target in targets:
            there = _layer(target)
            if there in LAYERS and LAYERS.index(there) > LAYERS.index(here):
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports flowing upwards:\n" + "\n".join(sorted(wrong))


def test_every_module_of_relq_sits_in_a_layer_package():
    loose = [p.name for p in RELQ.glob("*.py") if p.stem not in {"__init__", "__main__", "exceptions", "cli"}]
    assert not loose, f"modules outside the layer packages: {loose}"


def _navigation_files() -> set[str]:
    app = (ROOT / "app.py").read_text(encoding="utf-8")
    return set(re.findall(r'st\.Page\(\s*"(pages/[^"]+\.py)"', app))


def test_pages_holds_the_pages_of_the_navigation_and_nothing_else():
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").rglob("*") if p.is_file()}
    on_disk = {p for p in on_disk if "__pycache__" not in p}
    assert on_disk == _navigation_files()


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "pages").glob("*.py")))
def test_a_page_holds_no_sql(page):
    imported = _imports(ROOT / "pages" / page)
    assert not any(i == "sqlalchemy" or i.startswith("sqlalchemy.") for i in imported)

"""The frame's own pieces: RelQ's navigation in the sidebar, and pages served through the frame
even on a server's very first request.

Why RelQ draws its own menu: until ``st.navigation`` has run once in a server process, Streamlit
treats a ``pages/`` folder next to ``app.py`` in its legacy way — it lists every file there as a
page and may run a page file alone. ``.streamlit/config.toml`` sets
``client.showSidebarNavigation = false`` so that legacy list is never shown (not even for the first
paint), ``app.py`` calls ``st.navigation(..., position="hidden")`` first thing, and
:func:`sidebar_navigation` draws the role's pages as links, grouped by section.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st

from relq.core import auth

__all__ = ["APP_PATH", "framed", "sidebar_navigation"]

APP_PATH = Path(__file__).resolve().parents[2] / "app.py"


def framed() -> None:
    """Called first by every page: make sure the page runs inside the frame.

    On a fresh server the first request for a page URL (``/retention``) is served by Streamlit's
    legacy mode, which runs the page file alone — no sign-in gate, no filters. Then this runs the
    frame (``app.py``): its ``st.navigation`` ends the legacy mode for the whole server, resolves
    the same URL and runs this page inside the frame; the lone run stops here. Every later run
    goes through the frame directly and this returns at once. A page run on its own by a test
    (``AppTest.from_file("pages/…")``) has no ``pages/`` folder beside it and is left alone.

    Legacy mode finds a page by its file name only, so each page's ``url_path`` in ``app.py`` is
    its file's name (``pages/data-quality.py`` for ``/data-quality``); a URL it cannot find would
    put "Page not found" on the screen before the frame takes over.
    """
    from streamlit.runtime.pages_manager import PagesManager  # read only: which mode Streamlit is in

    if not PagesManager.uses_pages_directory:
        return
    runpy.run_path(str(APP_PATH), run_name="__main__")
    st.stop()


def sidebar_navigation(sections: dict[str, list], role: str | None) -> None:
    """The pages ``role`` may open, as links in the sidebar under their section headers."""
    box = st.sidebar.container()
    for section, pages in sections.items():
        shown = [p for p in pages if auth.page_allowed(role, p.url_path)]
        if not shown:
            continue
        if section:
            box.caption(section)
        for page in shown:
            box.page_link(page, label=page.title, icon=page.icon or None, width="stretch")

"""RelQ's server: ``streamlit run serve.py`` serves the dashboard (``app.py``) and, while the
server comes up, imports the libraries its first page needs (SciPy's statistics, pandas, Plotly,
SQLAlchemy and RelQ's own modules, about 3 seconds on two cores) in the background, so the first
person to open it does not wait for them. ``streamlit run app.py`` serves the same dashboard
without that head start.
"""

import threading
from contextlib import asynccontextmanager

import streamlit as st


def _import_the_first_page() -> None:
    import relq.analyses.quadrants  # noqa: F401
    import relq.outputs.board_report  # noqa: F401
    import relq.ui  # noqa: F401


@asynccontextmanager
async def _lifespan(_app):
    threading.Thread(target=_import_the_first_page, name="relq-imports", daemon=True).start()
    yield


app = st.App("app.py", lifespan=_lifespan)

"""RelQ — the frame: page config, the navigation (drawn first), sign-in, the shared filters and
the demo notice, then the page.

Run with ``streamlit run serve.py`` (``streamlit run app.py`` serves the same dashboard without
serve.py's head start). Each page in ``pages/`` only reads widgets, calls relq and renders; the UI
boundary they share is :mod:`relq.ui`.
"""

import streamlit as st

from relq import ui

st.set_page_config(page_title="RelQ — relationship quality", page_icon="🤝", layout="wide")

PAGES = {
    "Executives": [
        st.Page(
            "pages/overview.py",
            title="Overview",
            icon=":material/dashboard:",
            url_path="home",  # served at /; the name it reserves must differ from its bookmark below
            default=True,
        ),
    ],
    "CX leads": [
        st.Page(
            "pages/retention.py",
            title="Retention and churn",
            icon=":material/autorenew:",
            url_path="retention",
        ),
        st.Page(
            "pages/quadrants.py", title="Gap quadrants", icon=":material/grid_view:", url_path="quadrants"
        ),
        st.Page("pages/segments.py", title="Segment explorer", icon=":material/groups:", url_path="segments"),
        st.Page("pages/drivers.py", title="Drivers", icon=":material/insights:", url_path="drivers"),
        st.Page("pages/voice.py", title="Voice of the customer", icon=":material/forum:", url_path="voice"),
        st.Page("pages/cases.py", title="Cases", icon=":material/assignment:", url_path="cases"),
        st.Page("pages/themes.py", title="Comment themes", icon=":material/topic:", url_path="themes"),
    ],
    "Analysts": [
        st.Page("pages/upload.py", title="Upload", icon=":material/upload_file:", url_path="upload"),
        st.Page(
            "pages/measurement.py", title="Measurement", icon=":material/straighten:", url_path="measurement"
        ),
        st.Page(
            "pages/data-quality.py", title="Data quality", icon=":material/rule:", url_path="data-quality"
        ),
        st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    ],
    "About": [
        st.Page(
            "pages/methodology.py", title="Methodology", icon=":material/menu_book:", url_path="methodology"
        ),
    ],
    "Admin": [
        st.Page(
            "pages/admin.py",
            title="Access and audit",
            icon=":material/admin_panel_settings:",
            url_path="admin",
        ),
    ],
}

# The default page answers at / ; its own name keeps working as a bookmark too (hidden from the menu).
BOOKMARKS = [
    st.Page("pages/overview.py", title="Overview", url_path="overview", visibility="hidden"),
]

# The navigation comes first, before any slow work, so the very first paint is RelQ's own menu.
# Only the pages this role may open are in it; any other page's URL answers with a refusal.
role = ui.current_role()  # admin in local single-user mode; None while nobody is signed in
page = st.navigation(ui.navigation_for_role(PAGES, role, BOOKMARKS), position="hidden")
ui.sidebar_navigation(PAGES, role)
ui.sign_in_gate()  # the sign-in screen, or who is signed in; stops the run without a role
engine = ui.get_engine()
with ui.store_errors_as_sentences(engine), ui.timed_run(engine, page.url_path or "overview"):
    ui.read_data_version(engine)  # every cached number is keyed on it: an import anywhere shows at once
    ui.filter_sidebar(engine)
    ui.small_view_gate(engine)  # executives: a view of fewer than 5 customers shows a sentence only
    ui.demo_notice(engine)
    page.run()

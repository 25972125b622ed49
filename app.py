"""RelQ — the frame: page config, sign-in, the shared filters, the demo notice and the navigation.

Run with ``streamlit run app.py``. Each page in ``pages/`` only reads widgets, calls relq and renders.
"""

import streamlit as st

from pages import components

st.set_page_config(page_title="RelQ — relationship quality", page_icon="🤝", layout="wide")

role = components.sign_in_gate()  # sign-in when [auth] is configured, else local single-user mode
engine = components.get_engine()
with components.store_errors_as_sentences(engine):
    components.filter_sidebar(engine)
    components.demo_notice(engine)

PAGES = {
    "Executives": [
        st.Page(
            "pages/overview.py",
            title="Overview",
            icon=":material/dashboard:",
            url_path="overview",
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
    ],
    "Analysts": [
        st.Page("pages/upload.py", title="Upload", icon=":material/upload_file:", url_path="upload"),
        st.Page(
            "pages/measurement.py", title="Measurement", icon=":material/straighten:", url_path="measurement"
        ),
        st.Page(
            "pages/data_quality.py", title="Data quality", icon=":material/rule:", url_path="data-quality"
        ),
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

# Only the pages this role may open are in the menu; any other page's URL answers with a refusal.
page = st.navigation(components.navigation_for_role(PAGES, role))
with components.store_errors_as_sentences(engine):
    page.run()

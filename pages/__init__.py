"""RelQ's pages (run through st.navigation in app.py) and their shared UI components."""

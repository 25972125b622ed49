"""Methodology: every number RelQ shows, in plain words, with its formula and when to trust it."""

import streamlit as st

st.title("Methodology")
st.caption("Being written.")

"""Sessions page."""

import streamlit as st

st.title("Sessions")
st.info("This page is not built yet.")

"""Live chat page."""

import streamlit as st

st.title("Live chat")
st.info("This page is not built yet.")

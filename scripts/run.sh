#!/usr/bin/env bash
# Install RelQ's pinned dependencies into .venv and start the dashboard on the embedded DuckDB
# database (data/relq.duckdb). On first start the demo company is created and loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# Refuse to start with a forgeable sign-in cookie secret, or without sign-in off loopback (one sentence).
.venv/bin/python -m relq check
# The project's .streamlit/config.toml (localhost only, no error details) is read from here.
exec .venv/bin/python -m streamlit run serve.py "$@"

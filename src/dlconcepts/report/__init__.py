"""Figures (matplotlib, Agg backend, PNG files) and the Markdown reports of runs."""

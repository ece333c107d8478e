"""The rater app of the curation studio: blind pair audit, threshold tuning, listening sessions.

Logic lives in plain functions over a SQLAlchemy Session (`auth`, `audit`, `tuning`); `app` only
builds Gradio components and wires events; `cli` is the `annotate-ui` entry point.
"""

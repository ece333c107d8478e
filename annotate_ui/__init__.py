"""The rater app of the curation studio: blind pair audit, threshold tuning, listening sessions.

`logic/` holds the work as plain functions over a SQLAlchemy Session; `web/` only builds Gradio
components, routes and wires events; `cli` is the `annotate-ui` entry point.
"""

"""The rater app's domain logic: plain functions over a SQLAlchemy Session (accounts and the
logins and login lockouts kept in the store, the blind pair audit, threshold tuning, listening sessions, training runs, the
blind media copies, spectrograms). Nothing here imports Gradio."""

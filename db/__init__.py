"""The curation store: SQLAlchemy models (db.models) and engine/session helpers (db.session)."""

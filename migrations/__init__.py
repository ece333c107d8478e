"""Alembic migrations of the store (run through `curator db upgrade`)."""

"""Imports every model module so Base.metadata knows every table (Alembic, tests)."""

from db import models  # noqa: F401

"""Persistence: SQLAlchemy models, the session pattern and Alembic migrations."""

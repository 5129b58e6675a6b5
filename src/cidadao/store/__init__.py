"""Persistence: SQLAlchemy models, repositories and Alembic migrations (PostgreSQL and SQLite)."""

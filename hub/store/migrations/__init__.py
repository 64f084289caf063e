"""Alembic migrations of the hub's store (run through hub.store.migrate, not the alembic CLI)."""

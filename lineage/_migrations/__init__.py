"""Alembic migrations of the lineage tables (version table ``gh_lineage_alembic_version``)."""

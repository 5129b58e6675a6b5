from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from cidadao.store.db import NotMigratedError, engine_for, ensure_migrated
from cidadao.store.models import Base


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    ensure_migrated(engine)


def test_unmigrated_database_is_refused_with_a_clear_message(sqlite_url: str) -> None:
    with pytest.raises(NotMigratedError, match="cidadao db upgrade"):
        ensure_migrated(engine_for(sqlite_url))

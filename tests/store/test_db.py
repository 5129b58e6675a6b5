from __future__ import annotations

import pytest

from cidadao.store.db import make_engine


@pytest.mark.postgres
def test_postgres_sessions_speak_utf8_whatever_the_client_default(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # COPY lines are sent as UTF-8 bytes; a LATIN1 session would store them garbled.
    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    engine = make_engine(pg_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW client_encoding").scalar() == "UTF8"
    finally:
        engine.dispose()

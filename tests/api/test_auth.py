from __future__ import annotations

from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from cidadao.api.app import create_app
from cidadao.api.auth import issue_token, revoke_api_key
from cidadao.config import Settings
from cidadao.store.db import engine_for

from .conftest import TestClient, make_settings

TRIAGE = {"status": "confirmed", "note": "ok"}


def _patch(client: TestClient, headers: dict[str, str]) -> Any:
    return client.patch("/v1/findings/1", json=TRIAGE, headers=headers)


def test_writes_need_a_credential(client: TestClient) -> None:
    response = _patch(client, {})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert (
        client.post("/v1/investigations", json={"kind": "buyer", "cnpj": "00394460000141"}).status_code == 401
    )


def test_bad_signature_and_expired_tokens_are_refused(client: TestClient, settings: Settings) -> None:
    forged = jwt.encode(
        {"sub": "x", "scope": "write", "exp": 9999999999}, "another-secret-of-at-least-32-bytes!!", "HS256"
    )
    response = _patch(client, {"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert "signature" in response.json()["message"].lower()
    expired = issue_token(settings, "ana", ["write"], ttl_seconds=-10)
    response = _patch(client, {"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json()["message"] == "token expired"
    assert _patch(client, {"Authorization": "Bearer not.a.jwt"}).status_code == 401
    unsigned = jwt.encode({"sub": "x", "scope": "write", "exp": 9999999999}, None, "none")
    assert _patch(client, {"Authorization": f"Bearer {unsigned}"}).status_code == 401
    # A bad credential is refused even on public reads: it is a client bug worth surfacing.
    assert client.get("/v1/findings", headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_wrong_scope_is_forbidden(client: TestClient, settings: Settings, reader_key: str) -> None:
    read_only = issue_token(settings, "ana", ["read"])
    response = _patch(client, {"Authorization": f"Bearer {read_only}"})
    assert response.status_code == 403
    assert "write" in response.json()["message"]
    assert _patch(client, {"X-API-Key": reader_key}).status_code == 403
    admin = issue_token(settings, "root", ["admin"])
    assert _patch(client, {"Authorization": f"Bearer {admin}"}).status_code == 200


def test_api_keys_work_until_revoked(client: TestClient, settings: Settings) -> None:
    from cidadao.api.auth import create_api_key

    engine = engine_for(settings.effective_database_url)
    _id, key = create_api_key(engine, settings, "redacao", ["read", "write"])
    assert _patch(client, {"X-API-Key": key}).status_code == 200
    assert _patch(client, {"Authorization": f"Bearer {key}"}).status_code == 200
    events = client.get("/v1/findings/1").json()["events"]
    assert events[-1]["actor"] == "apikey:redacao"
    tampered = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    assert _patch(client, {"X-API-Key": tampered}).status_code == 401
    assert revoke_api_key(engine, key.split("_")[1])
    response = _patch(client, {"X-API-Key": key})
    assert response.status_code == 401
    assert response.json()["message"] == "API key revoked"


def test_private_reads_setting(sqlite_url: str, seeded: Any, reader_key: str) -> None:
    settings = make_settings(sqlite_url, api_reads_public=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/findings").status_code == 401
        assert client.get("/v1/findings", headers={"X-API-Key": reader_key}).status_code == 200
        assert client.get("/health").status_code == 200


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("JWT_SECRET_KEY", settings.jwt_secret_key.get_secret_value())
    return settings


def test_apikey_commands(cli_env: Settings, seeded: Any) -> None:
    from cidadao.cli import app

    runner = CliRunner()
    created = runner.invoke(app, ["apikey", "create", "jornal", "--scope", "read,write"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("cid_")
    listed = runner.invoke(app, ["apikey", "list"])
    prefix = key.split("_")[1]
    assert prefix in listed.stdout
    assert "jornal" in listed.stdout
    assert key not in listed.stdout
    with TestClient(create_app(cli_env)) as client:
        assert _patch(client, {"X-API-Key": key}).status_code == 200
        assert runner.invoke(app, ["apikey", "revoke", prefix]).exit_code == 0
        assert _patch(client, {"X-API-Key": key}).status_code == 401
    assert runner.invoke(app, ["apikey", "revoke", prefix]).exit_code == 1
    assert runner.invoke(app, ["apikey", "create", "x", "--scope", "root"]).exit_code == 2

"""Who is calling: JWT bearer tokens (JWT_SECRET_KEY) or API keys (stored as keyed hashes, revocable).

Scopes: `read`, `write`, `admin`; `write` implies `read`, `admin` implies both.
An API key looks like `cid_<prefix>_<secret>`: the prefix finds the row, the hash of the whole key proves it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Engine, insert, select, update

from cidadao.config import Settings
from cidadao.store.models import ApiKeyRow

SCOPES = ("read", "write", "admin")
_IMPLIED = {"admin": {"read", "write", "admin"}, "write": {"read", "write"}, "read": {"read"}}
KEY_PREFIX = "cid_"
JWT_ALGORITHM = "HS256"
_LAST_USED_EVERY_SECONDS = 60.0


class AuthError(Exception):
    """Credentials were given but are not valid (401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # recorded as the actor in audit logs
    kind: str  # anonymous | jwt | api_key
    scopes: frozenset[str] = field(default_factory=frozenset)

    def allows(self, scope: str) -> bool:
        return any(scope in _IMPLIED.get(granted, ()) for granted in self.scopes)


ANONYMOUS = Principal(name="anonymous", kind="anonymous")


def parse_scopes(text: str) -> list[str]:
    scopes = sorted({item.strip() for item in text.replace(" ", ",").split(",") if item.strip()})
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {text!r}")
    return scopes


def hash_key(settings: Settings, key: str) -> str:
    secret = settings.api_secret_key.get_secret_value().encode()
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def create_api_key(engine: Engine, settings: Settings, name: str, scopes: list[str]) -> tuple[int, str]:
    """A new key; its plaintext is returned once and never stored."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with engine.begin() as connection:
        key_id = connection.execute(
            insert(ApiKeyRow)
            .values(name=name, prefix=prefix, key_hash=hash_key(settings, key), scopes=scopes)
            .returning(ApiKeyRow.id)
        ).scalar_one()
    return key_id, key


def revoke_api_key(engine: Engine, prefix: str) -> bool:
    with engine.begin() as connection:
        result = connection.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.prefix == prefix, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return bool(result.rowcount)


def list_api_keys(engine: Engine) -> list[dict[str, Any]]:
    columns = (ApiKeyRow.id, ApiKeyRow.name, ApiKeyRow.prefix, ApiKeyRow.scopes)
    times = (ApiKeyRow.created_at, ApiKeyRow.last_used_at, ApiKeyRow.revoked_at)
    with engine.connect() as connection:
        rows = connection.execute(select(*columns, *times).order_by(ApiKeyRow.id)).mappings().all()
    return [dict(row) for row in rows]


_last_used_written: dict[int, float] = {}


def verify_api_key(engine: Engine, settings: Settings, key: str) -> Principal:
    parts = key.split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != KEY_PREFIX or not parts[1]:
        raise AuthError("malformed API key")
    query = select(ApiKeyRow.id, ApiKeyRow.name, ApiKeyRow.key_hash, ApiKeyRow.scopes, ApiKeyRow.revoked_at)
    with engine.connect() as connection:
        row = connection.execute(query.where(ApiKeyRow.prefix == parts[1])).first()
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(settings, key)):
        raise AuthError("unknown API key")
    if row.revoked_at is not None:
        raise AuthError("API key revoked")
    now = time.monotonic()
    # Throttled so a busy key does not turn every read into a write.
    if now - _last_used_written.get(row.id, -_LAST_USED_EVERY_SECONDS) >= _LAST_USED_EVERY_SECONDS:
        _last_used_written[row.id] = now
        with engine.begin() as connection:
            connection.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == row.id).values(last_used_at=datetime.now(UTC))
            )
    return Principal(name=f"apikey:{row.name}", kind="api_key", scopes=frozenset(row.scopes or ()))


def issue_token(settings: Settings, subject: str, scopes: list[str], ttl_seconds: int = 3600) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
    }
    return jwt.encode(claims, settings.jwt_secret_key.get_secret_value(), algorithm=JWT_ALGORITHM)


def verify_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret_key.get_secret_value(),
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as error:
        raise AuthError(f"invalid token: {error}") from None
    raw_scopes = claims.get("scope", "")
    scopes = raw_scopes.split() if isinstance(raw_scopes, str) else []
    return Principal(
        name=f"user:{claims['sub']}", kind="jwt", scopes=frozenset(s for s in scopes if s in SCOPES)
    )

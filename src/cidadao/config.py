"""Settings: every one from the environment, each with a documented default.

Names are compatible with the original deployment (REDIS_URL, PORT, JWT_SECRET_KEY, SECRET_KEY,
API_SECRET_KEY, ALERT_WEBHOOKS, ...). A malformed value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SQLITE_PATH = Path("var") / "cidadao.sqlite"
_SECRET_NAMES = re.compile(r"(secret|password|token|key)", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z0-9+.-]+://)(?P<userinfo>[^@/\s]+)@", re.IGNORECASE)
_SEVERITIES = ("low", "medium", "high", "critical")

CommaList = Annotated[list[str], NoDecode]


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the environment variable."""


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    # Storage and queue
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: a SQLite file under ./var/ (refused in production)",
    )
    redis_url: str | None = Field(default=None, description="Celery broker and cache; empty: embedded broker")

    # API
    port: int = Field(default=8000, ge=1, le=65535)
    jwt_secret_key: SecretStr = SecretStr("dev-jwt-secret-change-me")
    secret_key: SecretStr = SecretStr("dev-secret-change-me")
    api_secret_key: SecretStr = SecretStr("dev-api-secret-change-me")
    api_reads_public: bool = True
    cors_origins: CommaList = Field(default_factory=list)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    api_list_cache_seconds: float = Field(
        default=1.0, ge=0, description="reuse identical /v1/findings list answers this long; 0: off"
    )
    api_opentelemetry: bool = Field(
        default=False, description="FastAPI's OpenTelemetry bridge, for deployments with an OTel SDK"
    )

    # Alerts
    alert_webhooks: CommaList = Field(default_factory=list, description="Discord or generic webhook URLs")
    alert_emails: CommaList = Field(default_factory=list)
    alert_webhook_secret: SecretStr | None = None
    alert_allowed_hosts: CommaList = Field(default_factory=list, description="hosts exempt from SSRF checks")
    alert_min_severity: Literal["low", "medium", "high", "critical"] = "high"
    alert_group_threshold: int = Field(
        default=5, ge=2, description="findings per buyer per run before grouping"
    )
    alert_quiet_hours: str | None = Field(default=None, description="e.g. 22-7 (America/Sao_Paulo)")
    alert_channel_min_severity: CommaList = Field(
        default_factory=list, description="per channel kind, e.g. email=critical,file=low"
    )
    alert_max_attempts: int = Field(default=8, ge=1)
    alert_timeout_seconds: float = Field(default=10.0, gt=0, description="per delivery attempt")
    alert_console: bool = Field(default=False, description="also print alerts on stdout (demo mode)")
    alert_file: Path | None = Field(default=None, description="also append alerts as JSON Lines to this file")
    digest_send_empty: bool = True
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "alertas@cidadao.ai"
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"

    # Sources
    pncp_base_url: str = "https://pncp.gov.br/api/consulta"
    pncp_modalidades: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [8, 9])
    pncp_page_size: int = Field(default=50, ge=10, le=500)
    pncp_window_days: int = Field(default=1, ge=1, le=365)
    pncp_overlap_minutes: int = Field(default=60, ge=0)
    pncp_requests_per_second: float = Field(default=2.0, gt=0)
    pncp_timeout_seconds: float = Field(default=30.0, gt=0)
    pncp_max_retries: int = Field(default=6, ge=0)
    transparencia_api_key: SecretStr | None = None
    transparencia_base_url: str = "https://api.portaldatransparencia.gov.br/api-de-dados"
    cache_ttl_seconds: int = Field(default=3600, ge=0)

    # Schedule (seconds) and retention (days)
    monitor_interval_seconds: int = Field(default=300, ge=10)
    poll_interval_seconds: int = Field(default=30, ge=5)  # fast path: only what PNCP appended today
    contracts_interval_seconds: int = Field(default=900, ge=10)
    dispatch_interval_seconds: int = Field(default=30, ge=1)
    digest_interval_seconds: int = Field(default=86400, ge=60)
    cleanup_interval_seconds: int = Field(default=604800, ge=60)
    heartbeat_interval_seconds: int = Field(default=300, ge=5)
    sanctions_interval_seconds: int = Field(default=86400, ge=60)
    retention_quarantine_days: int = Field(default=90, ge=1)
    retention_runs_days: int = Field(default=90, ge=1)
    retention_outbox_days: int = Field(default=30, ge=1)
    global_analysis_interval_seconds: int = Field(
        default=3600, ge=60, description="indicators of scope global run over all records this often"
    )
    job_max_attempts: int = Field(default=3, ge=1, description="starts per job window before it is parked")
    task_soft_time_limit_seconds: int = Field(default=600, ge=5)
    task_time_limit_seconds: int = Field(default=900, ge=10)
    broker_visibility_timeout_seconds: int = Field(default=3600, ge=60, description="> longest task")
    embedded_broker_url: str = Field(
        default="sqla+sqlite:///var/broker.sqlite", description="Celery broker when REDIS_URL is empty"
    )
    worker_probe_interval_seconds: int = Field(
        default=60, ge=1, description="worker self-probe through the broker (stuck-consumer watchdog)"
    )
    worker_probe_timeout_seconds: int = Field(default=600, ge=3, description="no probe answered: restart")
    beat_standby_poll_seconds: float = Field(default=5.0, gt=0, description="hot-standby beat lock retry")

    redflags_config: Path | None = Field(
        default=None, description="redflags.toml overriding indicator parameters"
    )

    @field_validator(
        "cors_origins",
        "alert_webhooks",
        "alert_emails",
        "alert_allowed_hosts",
        "alert_channel_min_severity",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("pncp_modalidades", mode="before")
    @classmethod
    def _modalidades(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+", address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return value

    @field_validator("alert_webhooks")
    @classmethod
    def _webhooks(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                raise ValueError(f"not an http(s) URL: {mask_url(url)!r}")
        return value

    @field_validator("alert_channel_min_severity")
    @classmethod
    def _channel_min_severity(cls, value: list[str]) -> list[str]:
        for item in value:
            kind, _, severity = item.partition("=")
            if not kind.strip() or severity.strip() not in _SEVERITIES:
                raise ValueError(f"expected KIND=SEVERITY (low|medium|high|critical), got {item!r}")
        return value

    @field_validator("alert_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"([01]?\d|2[0-3])-([01]?\d|2[0-3])", value):
            raise ValueError("expected START-END hours, e.g. 22-7")
        return value or None

    @model_validator(mode="after")
    def _emails_need_smtp(self) -> Settings:
        if self.alert_emails and not self.smtp_host:
            raise ValueError("ALERT_EMAILS is set but SMTP_HOST is not: e-mail alerts could not be sent")
        return self

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.environment != "production":
            return self
        if not self.database_url:
            raise ValueError(
                "DATABASE_URL is required when ENVIRONMENT=production (no fallback to a local SQLite file)"
            )
        for name in ("jwt_secret_key", "secret_key", "api_secret_key"):
            if getattr(self, name).get_secret_value().startswith("dev-"):
                raise ValueError(f"{name.upper()} must be set to a real secret when ENVIRONMENT=production")
        if self.alert_webhooks and self.alert_webhook_secret is None:
            raise ValueError(
                "ALERT_WEBHOOK_SECRET is required when ENVIRONMENT=production and webhooks are set"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{DEFAULT_SQLITE_PATH}"

    @property
    def min_severity_rank(self) -> int:
        return _SEVERITIES.index(self.alert_min_severity) + 1

    def masked(self) -> dict[str, str]:
        """Effective settings for display: secrets and credentials in URLs masked."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = "********" if value.get_secret_value() else ""
            elif value is None:
                text = ""
            elif isinstance(value, list):
                text = ",".join(mask_url(str(item)) for item in value)
            elif _SECRET_NAMES.search(name):
                text = "********"
            else:
                text = mask_url(str(value))
            shown[name.upper()] = text
        shown["DATABASE_URL"] = mask_url(self.effective_database_url)
        return shown


def normalise_database_url(url: str) -> str:
    """PaaS providers hand out postgres:// URLs; SQLAlchemy wants an explicit psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(text: str) -> str:
    """Hide credentials and webhook tokens: keep scheme and host, drop userinfo and long path secrets."""
    masked = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)
    return re.sub(r"(/api/webhooks/\d+/)[\w-]+", r"\1***", masked)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"] if isinstance(part, str)).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if name else message)
    return "invalid settings: " + "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. Raises SettingsError naming the bad variable."""
    return load_settings()


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None

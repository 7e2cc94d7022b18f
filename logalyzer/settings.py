"""One pydantic ``Settings`` object, read from the environment by the face that starts a process.

``LOGALYZER_DSN`` selects a PostgreSQL server; when it is unset an embedded server (``pgserver``)
is started under ``LOGALYZER_HOME`` and reused by later runs. ``RAY_ADDRESS`` (Ray's own
variable) selects a Ray cluster; without it a local Ray starts.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from logalyzer.core.features import KINDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOGALYZER_", extra="ignore")

    dsn: str | None = Field(None, description="PostgreSQL URL; unset = embedded PostgreSQL")
    home: Path = Field(Path("~/.local/share/logalyzer"), description="where embedded state lives")
    tz: str = Field("UTC", description="the fleet's local time zone (IANA name)")
    ray_address: str | None = Field(None, validation_alias="RAY_ADDRESS")
    ray_log_to_driver: bool = Field(
        False, description="forward Ray workers' output to the terminal (else: Ray's log files)"
    )
    ingest_concurrency: int | None = Field(
        None, ge=1, description="parallel file loaders (default: CPUs)"
    )
    serve_host: str = Field("127.0.0.1", description="address the HTTP service listens on")
    serve_port: int = Field(8000, ge=1, le=65535, description="port of the HTTP service")
    serve_max_body: int = Field(
        65_536, ge=1024, description="largest request body in bytes (413 above)"
    )
    serve_access_log: bool = Field(
        True, description="one log line per request in the replica's log (costs some CPU)"
    )
    serve_db_pool: int = Field(
        8, ge=1, le=256, description="PostgreSQL connections per Serve replica"
    )
    serve_replicas: int = Field(
        1, ge=1, le=1024, description="Serve replicas of the HTTP service (about one per core)"
    )
    serve_nice: int | None = Field(
        0,
        ge=-20,
        le=19,
        description="CPU priority (nice) of the replicas' HTTP threads; unset: leave Ray's",
    )
    serve_max_inflight: int = Field(
        16,
        ge=1,
        le=100_000,
        description="requests a replica works on at once; more are refused at once (503)",
    )
    serve_max_lag_ms: float = Field(
        10.0,
        ge=0,
        le=10_000,
        description="refuse requests (503) while a replica's event loop runs this late (0: off)",
    )
    serve_token_cache_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="how long a checked token is trusted without PostgreSQL (revocation delay)",
    )
    lines_max_window_h: float = Field(
        24.0,
        gt=0,
        le=24 * 366,
        description="widest time window GET /v1/lines searches, hours (400 above)",
    )
    lines_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="longest a GET /v1/lines page may run in PostgreSQL (400 past it)",
    )
    score_max_body: int = Field(
        4 * 1024 * 1024, ge=1024, description="largest /v1/score request body in bytes"
    )
    score_max_batch: int = Field(
        1000, ge=1, le=100_000, description="sessions per scoring batch (@serve.batch)"
    )
    score_batch_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="longest wait for a batch to fill, ms"
    )
    score_versions: dict[str, int] = Field(
        default_factory=dict,
        description='pinned detector versions, e.g. {"lstm": 3}; unset: the newest',
    )
    score_model_poll_s: float = Field(
        30.0,
        ge=0,
        description="how often a replica checks which model versions to serve (0: only at start)",
    )

    alert_webhook: str | None = Field(
        None, description="URL that new and resolved alerts are POSTed to as JSON; unset: none"
    )
    alert_webhook_timeout_s: float = Field(
        5.0, gt=0, le=300, description="timeout of one webhook attempt, seconds"
    )
    alert_webhook_retries: int = Field(
        3, ge=0, le=20, description="webhook retries after a failed attempt (connection, 5xx)"
    )
    alert_webhook_backoff_s: float = Field(
        1.0, ge=0, le=60, description="wait before the first retry, doubled each time"
    )
    alert_alpha: float = Field(
        0.001, gt=0, lt=0.5, description="significance of the alert test (one-sided p below it)"
    )
    alert_min_ratio: float = Field(
        1.5, ge=1.0, description="a window must be at least this multiple of its baseline"
    )
    alert_min_hours: float = Field(
        10.0, ge=0, description="viewing hours a cohort needs in a window (and its baseline)"
    )
    alert_min_sessions: int = Field(30, ge=2, description="sessions a cohort needs in a window")
    alert_baseline_days: int = Field(
        7, ge=1, le=366, description="daily windows: the baseline is the previous N days"
    )
    alert_baseline_hours: int = Field(
        24, ge=1, le=24 * 31, description="hourly windows: the baseline is the previous N hours"
    )

    @field_validator("alert_webhook")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError(f"the webhook must be an http(s) URL (got {v!r})")
        return v or None

    @field_validator("score_versions")
    @classmethod
    def _known_detectors(cls, v: dict[str, int]) -> dict[str, int]:
        bad = sorted(set(v) - set(KINDS))
        if bad or any(int(x) < 1 for x in v.values()):
            raise ValueError(f"detectors are {', '.join(KINDS)} with versions >= 1 (got {v})")
        return v

    @field_validator("home")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return Path(v).expanduser()

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``: safe to print or log."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))

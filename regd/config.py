"""The configuration: one TOML file, ``REGD_<SECTION>_<KEY>`` environment overrides,
then command-line overrides; resolved and validated once into frozen dataclasses.

Every key is documented in ``conf/regd.example.toml``. An unknown section or key, or a
value of the wrong type, raises ``ConfigError`` with one line naming it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from regd.cron import Cron, CronError
from regd.numbers import parse_uint


class ConfigError(Exception):
    """A configuration problem, described in one line."""


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:5000"
    external_url: str = ""  # defaults to http(s)://<listen>
    tls_cert: str = ""
    tls_key: str = ""
    ca_cert: str = ""
    workers: int | Literal["auto"] = "auto"  # a number, or one per CPU (regd.cpus)
    shutdown_grace: float = 30.0
    header_timeout: float = 60.0  # a request head must arrive within this (also keep-alive idle)
    body_timeout: float = 60.0  # a request body may stall at most this long
    max_connections_per_address: int = 256  # per worker process; 0: no limit
    access_log: bool = True
    log_format: str = "text"  # "text" or "json"
    log_level: str = "info"
    pull_flush_interval: float = 5.0  # seconds between writes of counted pulls
    # How plain-HTTP blob bodies go out: "sendfile" (zero copy), "mapped" (written from a
    # mapping of the file: the kernel copies once), "auto": mapped to loopback peers,
    # sendfile to the rest (regd/api/sendfile.py says why).
    blob_send: str = "auto"

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = "./regd-data"
    fsync: bool = True
    # Whole blocks of upload bodies written with O_DIRECT, past the page cache
    # (regd/storage/appender.py); false: through the page cache.
    direct_writes: bool = True
    # Bytes: below this much free space, /api/v2.0/health reports storage unhealthy.
    min_free: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class UploadsConfig:
    expire_after: float = 24 * 3600.0
    janitor_interval: float = 600.0
    max_manifest_size: int = 4 * 1024 * 1024
    max_sessions_per_repository: int = 200  # open upload sessions; 0: no limit
    max_sessions_per_account: int = 1000


@dataclass(frozen=True)
class GCConfig:
    grace_period: float = 7200.0
    delete_untagged: bool = False


@dataclass(frozen=True)
class ScrubConfig:
    # A Harbor cron (second minute hour day month weekday); "" never scrubs on its own.
    schedule: str = "0 0 3 * * 0"  # Sundays at 03:00 UTC
    rate_limit: int = 100 * 1024 * 1024  # bytes read per second at most; 0: no limit


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = True
    service: str = "regd"  # the token's audience and the challenge's service=
    issuer: str = "regd-token-issuer"
    token_expiration: int = 30  # minutes
    realm: str = ""  # defaults to <external_url>/service/token
    project_creation_restriction: str = "everyone"  # or "adminonly"
    max_failed_logins: int = 5
    lockout_seconds: float = 60.0


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True  # the web interface at /
    session_idle_timeout: float = 3600.0  # seconds without a request before a session ends
    session_lifetime: float = 12 * 3600.0  # seconds after sign-in a session ends regardless


@dataclass(frozen=True)
class ProxyConfig:
    connect_timeout: float = 3.0  # seconds to reach an upstream before it counts as down
    read_timeout: float = 30.0  # seconds an upstream may stay silent mid-answer
    probe_interval: float = 30.0  # seconds between background checks of a down upstream
    retention_days: int = 7  # proxy-cache artifacts not pulled this long are removed
    retention_schedule: str = "0 0 3 * * *"  # when (6-field UTC cron, as [gc]); "" = never


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    gc: GCConfig = field(default_factory=GCConfig)
    scrub: ScrubConfig = field(default_factory=ScrubConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    web: WebConfig = field(default_factory=WebConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)

    @property
    def external_url(self) -> str:
        if self.server.external_url:
            return self.server.external_url.rstrip("/")
        scheme = "https" if self.server.tls_cert else "http"
        return f"{scheme}://{self.server.listen}"

    @property
    def token_realm(self) -> str:
        return self.auth.realm or f"{self.external_url}/service/token"


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _literal_words(hint: Any) -> tuple[str, ...]:
    """The words of an ``int | Literal[...]`` field type; () for any other type."""
    args = typing.get_args(hint)
    if int not in args:
        return ()
    return tuple(w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a))


def _coerce(where: str, raw: Any, hint: Any, from_text: bool) -> Any:
    """Check (or, for environment strings, convert) one value against its field type."""
    if hint is bool:
        if (
            from_text
            and isinstance(raw, str)
            and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off")
        ):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(raw, bool):
            return raw
    elif hint is int or hint is float:
        if from_text and isinstance(raw, str):
            try:
                return hint(raw)
            except ValueError:
                pass
        # TOML's 5 is a fine float; 1.5 is no int; a bool is neither.
        if isinstance(raw, int if hint is int else int | float) and not isinstance(raw, bool):
            return hint(raw)
    elif hint is str:
        if isinstance(raw, str):
            return raw
    elif words := _literal_words(hint):  # int | Literal["auto"]: a count or one of the words
        if from_text and isinstance(raw, str) and raw.strip().isdigit():
            return int(raw)
        if (isinstance(raw, int) and not isinstance(raw, bool)) or raw in words:
            return raw
        raise ConfigError(f"{where}: expected int or {' or '.join(map(repr, words))}, got {raw!r}")
    elif typing.get_origin(hint) in (list, types.GenericAlias) or hint == list[str]:
        if from_text and isinstance(raw, str):
            return [p.strip() for p in raw.split(",") if p.strip()]
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            return raw
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: expected {name}, got {raw!r}")


def _merge(layers: list[tuple[str, Mapping[str, Mapping[str, Any]], bool]]) -> Config:
    sections = _section_types()
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for origin, layer, from_text in layers:
        for section, keys in layer.items():
            if section not in sections:
                raise ConfigError(f"{origin}: unknown section [{section}]")
            if not isinstance(keys, Mapping):
                raise ConfigError(f"{origin}: [{section}] must be a table")
            hints = typing.get_type_hints(sections[section])
            for key, raw in keys.items():
                if key not in hints:
                    raise ConfigError(f"{origin}: unknown key {key!r} in [{section}]")
                where = f"{origin}: [{section}] {key}"
                values[section][key] = _coerce(where, raw, hints[key], from_text)
    config = Config(**{name: cls(**values[name]) for name, cls in sections.items()})
    _validate(config)
    return config


def _validate(config: Config) -> None:
    listen = config.server.listen
    if ":" not in listen or parse_uint(listen.rsplit(":", 1)[1], 65535) is None:
        raise ConfigError(f"[server] listen: expected HOST:PORT, got {listen!r}")
    if not 0 <= config.server.port <= 65535:
        raise ConfigError(f"[server] listen: port out of range in {listen!r}")
    if config.server.blob_send not in ("auto", "sendfile", "mapped"):
        raise ConfigError(f"[server] blob_send: expected 'auto', 'sendfile' or 'mapped', "
                          f"got {config.server.blob_send!r}")
    if config.server.log_format not in ("text", "json"):
        raise ConfigError(f"[server] log_format: expected 'text' or 'json', got {config.server.log_format!r}")
    if config.server.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(
            f"[server] log_level: expected debug, info, warning or error, got {config.server.log_level!r}"
        )
    if bool(config.server.tls_cert) != bool(config.server.tls_key):
        raise ConfigError("[server] tls_cert and tls_key must be set together")
    if isinstance(config.server.workers, int) and config.server.workers < 1:
        raise ConfigError("[server] workers: must be at least 1")
    if config.storage.min_free < 0:
        raise ConfigError("[storage] min_free: must not be negative (bytes)")
    if config.scrub.rate_limit < 0:
        raise ConfigError("[scrub] rate_limit: must not be negative (bytes per second; 0: no limit)")
    if config.scrub.schedule:
        try:
            Cron.parse(config.scrub.schedule)
        except CronError as e:
            raise ConfigError(f"[scrub] schedule: {e}") from None
    if config.server.pull_flush_interval <= 0:
        raise ConfigError("[server] pull_flush_interval: must be positive")
    if config.server.header_timeout <= 0 or config.server.body_timeout <= 0:
        raise ConfigError("[server] header_timeout and body_timeout: must be positive")
    if config.server.max_connections_per_address < 0:
        raise ConfigError("[server] max_connections_per_address: must not be negative (0: no limit)")
    if config.gc.grace_period < 0:
        raise ConfigError("[gc] grace_period: must not be negative")
    if config.uploads.max_sessions_per_repository < 0 or config.uploads.max_sessions_per_account < 0:
        raise ConfigError("[uploads] max_sessions_per_repository/account: must not be negative (0: no limit)")
    if config.uploads.expire_after <= 0:
        raise ConfigError("[uploads] expire_after: must be positive")
    _validate_auth(config.auth)
    if config.web.session_idle_timeout <= 0 or config.web.session_lifetime <= 0:
        raise ConfigError("[web] session_idle_timeout and session_lifetime must be positive")
    _validate_proxy(config.proxy)


def _validate_proxy(proxy: ProxyConfig) -> None:
    if min(proxy.connect_timeout, proxy.read_timeout, proxy.probe_interval) <= 0:
        raise ConfigError("[proxy] connect_timeout, read_timeout and probe_interval must be positive")
    if proxy.retention_days < 1:
        raise ConfigError("[proxy] retention_days: must be at least 1")
    # The six fields' values are checked when the retention task starts (regd.cron).
    if proxy.retention_schedule and len(proxy.retention_schedule.split()) != 6:
        raise ConfigError(
            f"[proxy] retention_schedule: expected 6 fields (second minute hour day month weekday), "
            f"got {proxy.retention_schedule!r}"
        )


def _validate_auth(auth: AuthConfig) -> None:
    if auth.project_creation_restriction not in ("everyone", "adminonly"):
        raise ConfigError(
            "[auth] project_creation_restriction: expected 'everyone' or 'adminonly', "
            f"got {auth.project_creation_restriction!r}"
        )
    if auth.token_expiration < 1:
        raise ConfigError("[auth] token_expiration: must be at least 1 (minutes)")
    if not auth.service:
        raise ConfigError("[auth] service: must not be empty")
    if auth.max_failed_logins < 1 or auth.lockout_seconds < 0:
        raise ConfigError("[auth] max_failed_logins must be at least 1, lockout_seconds not negative")


def env_layer(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``REGD_<SECTION>_<KEY>`` variables, as a layer of text values."""
    sections = _section_types()
    layer: dict[str, dict[str, str]] = {}
    for var, value in environ.items():
        if not var.startswith("REGD_"):
            continue
        rest = var[len("REGD_") :].lower()
        for section in sections:
            if rest.startswith(section + "_"):
                layer.setdefault(section, {})[rest[len(section) + 1 :]] = value
                break
    return layer


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Resolve the configuration: file, then environment, then command-line overrides."""
    layers: list[tuple[str, Mapping[str, Mapping[str, Any]], bool]] = []
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
        layers.append((str(path), data, False))
    # Variables whose second word is no section (REGD_ADMIN_PASSWORD...) are not settings.
    layers.append(("environment", env_layer(os.environ if environ is None else environ), True))
    if overrides:
        layers.append(("command line", overrides, False))
    return _merge(layers)

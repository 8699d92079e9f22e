"""Node configuration: defaults, then the TOML file, then ``ENTRAIDE_<SECTION>__<KEY>`` variables.

The merged document is validated against ``schemas/config.schema.json`` and turned into frozen
dataclasses. Errors name the offending key (``database.url: …``) instead of a traceback.
Nothing is read at import time: every process and every test builds its own ``Settings``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

ENV_PREFIX = "ENTRAIDE_"
CONFIG_ENV = "ENTRAIDE_CONFIG"
CONFIG_FILE_NAME = "entraide.toml"
SQLITE_FILE_NAME = "entraide.sqlite3"
# Attachment types the node can recognise from their bytes and serve safely. ``media.allowed_types``
# may narrow this list, never widen it (no SVG, HTML or office documents: docs/security.md case 12).
MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain")

DEFAULTS: dict[str, dict[str, Any]] = {
    "server": {
        "host": "127.0.0.1",
        "port": 8080,
        "max_body_bytes": 1_048_576,
        "trusted_proxies": [],
        "shutdown_timeout_s": 10.0,
        "drain_s": 0.0,
        "gc_freeze": True,
        "gc_threshold": 7000,
        "event_loop": "asyncio",
    },
    "database": {"pool_size": 10, "echo": False},
    "storage": {"data_dir": ".", "secret_key_file": "secret.key"},
    "federation": {
        "allow_private_addresses": False,
        "authorized_fetch": False,
        "network": "open",
        "blocked_domains": [],
        "allowed_domains": [],
        "rfc9421_first_knock": False,
        "inbox_rate_per_host": 100.0,
        "inbox_burst_per_host": 2000,
    },
    "worker": {
        "in_process": True,
        "concurrency": 8,
        "poll_interval_s": 0.5,
        "deliveries_in_flight": 256,
        "deliveries_per_host": 0,
        "signing_processes": 0,
    },
    "logging": {"level": "info", "format": "text", "access_log": False},
    "media": {
        "max_bytes": 20 * 1024 * 1024,
        "dir": "media",
        "allowed_types": list(MEDIA_TYPES),
        "store": "local",
        "s3_endpoint": "",
        "s3_region": "",
        "s3_bucket": "",
        "s3_prefix": "",
        "s3_access_key": "",
        "s3_secret_key": "",
    },
    "metrics": {"token": "", "loopback_only": True},
    "events": {"reminder_before_s": 86400},
}


_S3_KEYS = ("store", "s3_endpoint", "s3_region", "s3_bucket", "s3_prefix", "s3_access_key", "s3_secret_key")


class ConfigError(Exception):
    """The configuration cannot be loaded: the message names the file, key and problem."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    origin: str
    host: str
    port: int
    max_body_bytes: int
    trusted_proxies: tuple[str, ...]
    shutdown_timeout_s: float
    drain_s: float = 0.0
    """On SIGTERM: seconds of serving with ``/healthz`` at 503 before the listener closes."""
    gc_freeze: bool = True
    """``serve`` and ``worker``: what start-up left alive is frozen out of the cyclic collector."""
    gc_threshold: int = 7000
    """``serve`` and ``worker``: the cyclic collector's young-generation threshold (Python's own: 700)."""
    event_loop: str = "asyncio"
    """``serve`` and ``worker``: ``asyncio`` (asyncio's own loop) or ``uvloop`` (:mod:`server.eventloop`)."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str
    pool_size: int
    echo: bool

    @property
    def dialect(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    def redacted_url(self) -> str:
        """The URL with any password replaced, safe for logs and ``config check``."""
        head, sep, tail = self.url.partition("://")
        if "@" in tail:
            creds, _, rest = tail.rpartition("@")
            user = creds.split(":", 1)[0]
            return f"{head}{sep}{user}:***@{rest}" if ":" in creds else self.url
        return self.url


@dataclass(frozen=True, slots=True)
class StorageSettings:
    data_dir: Path
    secret_key_file: Path


@dataclass(frozen=True, slots=True)
class FederationSettings:
    allow_private_addresses: bool
    authorized_fetch: bool
    network: str
    blocked_domains: tuple[str, ...]
    allowed_domains: tuple[str, ...]
    rfc9421_first_knock: bool
    inbox_rate_per_host: float
    inbox_burst_per_host: int


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    in_process: bool
    concurrency: int
    poll_interval_s: float
    deliveries_in_flight: int = 256
    """Deliveries one worker has in flight at once, over all hosts (its delivery lane)."""
    deliveries_per_host: int = 0
    """Deliveries in flight at once to one host, all the node's worker processes together
    (decision 110); ``0``: ``concurrency``."""
    signing_processes: int = 0
    """Child processes that make the delivery lane's draft-cavage signatures, a batch at a
    time (decision 90); ``0``: each delivery signs in the worker. Only worth it when the
    worker may use another core (a separate ``worker`` process, unpinned)."""

    @property
    def per_host(self) -> int:
        """The per-host cap in effect (``deliveries_per_host``, else ``concurrency``)."""
        return self.deliveries_per_host or self.concurrency


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str
    format: str
    access_log: bool


@dataclass(frozen=True, slots=True)
class MediaSettings:
    max_bytes: int
    dir: Path
    """Uploads with ``store = "local"``; with ``"s3"``, only where uploads are staged."""
    allowed_types: tuple[str, ...]
    store: str = "local"
    """``local`` (files under ``dir``) or ``s3`` (an S3-compatible bucket, for several machines)."""
    s3_endpoint: str = ""
    s3_region: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Who may read ``/metrics``: its counters reveal activity, members-only included (case 59)."""

    token: str = ""
    """When set, ``/metrics`` answers only ``Authorization: Bearer <token>``."""
    loopback_only: bool = True
    """Without a token: only requests from a loopback address, not relayed by a proxy."""


SECTIONS = ("server", "database", "storage", "federation", "worker", "logging", "media", "metrics", "events")
"""The configuration's sections, in the order ``config check`` prints them."""


@dataclass(frozen=True, slots=True)
class EventSettings:
    """Events (issue 18)."""

    reminder_before_s: int = 86400
    """A participant's ``event_reminder`` notification shows this many seconds before the start
    (derived when notifications are read, decision 72); ``0``: no reminders."""

    @property
    def reminder_before(self) -> timedelta:
        return timedelta(seconds=self.reminder_before_s)


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole validated configuration of one node."""

    server: ServerSettings
    database: DatabaseSettings
    storage: StorageSettings
    federation: FederationSettings
    worker: WorkerSettings
    logging: LoggingSettings
    media: MediaSettings
    metrics: MetricsSettings = MetricsSettings()
    events: EventSettings = EventSettings()
    source: Path | None = field(default=None, compare=False)

    def as_document(self, *, redact: bool = True) -> dict[str, Any]:
        """The effective configuration as a TOML-able dict (``config check`` prints it)."""
        doc: dict[str, Any] = {}
        for name in SECTIONS:
            section = getattr(self, name)
            doc[name] = {
                key: (
                    list(value)
                    if isinstance(value, tuple)
                    else str(value)
                    if isinstance(value, Path)
                    else value
                )
                for key, value in ((f, getattr(section, f)) for f in section.__slots__)
            }
        if redact:
            doc["database"]["url"] = self.database.redacted_url()
            if self.media.s3_secret_key:
                doc["media"]["s3_secret_key"] = "***"
            doc["metrics"]["token"] = "***" if self.metrics.token else ""
        return doc


def _schema() -> dict[str, Any]:
    text = resources.files("schemas").joinpath("config.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _coerce_env(value: str, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type")
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return value  # left as a string so validation reports it by name
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "array":
        return _env_list(value)
    return value


def _env_list(value: str) -> Any:
    """A list from the environment: a JSON array (``["127.0.0.1", "::1"]``, the form compose
    files and TOML users write) or a comma-separated list (``a.example,b.example``).

    A JSON array used to be split on commas, each piece a string such as ``'["127.0.0.1"'``
    that matched nothing: the setting silently came out empty in effect. Malformed JSON is
    returned as is so that validation names the key.
    """
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except ValueError:
            return value
    return [item.strip() for item in stripped.split(",") if item.strip()]


def _proxy_networks(entries: list[str], where: str) -> tuple[str, ...]:
    """``server.trusted_proxies`` as normalised networks; an entry that is not an address or a
    CIDR network (a host name, a typo) is an error, not a proxy that silently never matches."""
    networks: list[str] = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise ConfigError(
                f"{where}server.trusted_proxies: {entry!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


def _apply_env(doc: dict[str, Any], environ: Mapping[str, str], schema: Mapping[str, Any]) -> None:
    sections = schema["properties"]
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in sections:
            raise ConfigError(f"{name}: unknown configuration section {section!r}")
        keys = sections[section]["properties"]
        if key not in keys:
            raise ConfigError(f"{name}: unknown key {section}.{key}")
        doc.setdefault(section, {})[key] = _coerce_env(value, keys[key])


def _error_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    instance: Any = error.instance
    schema: Any = error.schema
    expected: Any = error.validator_value
    if error.validator == "additionalProperties":
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        where = _error_path(error)
        prefix = "" if where == "(top level)" else f"{where}."
        return f"unknown key {', '.join(prefix + e for e in extra)}"
    if error.validator == "required":
        missing = sorted(set(expected) - set(instance))
        where = _error_path(error)
        prefix = "" if where == "(top level)" else f"{where}."
        return f"missing required key {', '.join(prefix + m for m in missing)}"
    if error.validator == "pattern" and error.absolute_path and error.absolute_path[-1] == "url":
        return f"{_error_path(error)}: {error.instance!r} must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
    return f"{_error_path(error)}: {error.message}"


def build_settings(
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> Settings:
    """Merge defaults, ``raw`` (a parsed TOML document) and the environment; validate; freeze.

    Relative paths (the SQLite file, ``storage.data_dir``) are resolved against ``base_dir``;
    ``storage.secret_key_file`` and ``media.dir`` against the data directory.

    Raises:
        ConfigError: naming the first invalid or unknown key.
    """
    schema = _schema()
    doc: dict[str, Any] = {name: dict(values) for name, values in DEFAULTS.items()}
    for name, values in raw.items():
        if isinstance(values, Mapping) and name in doc:
            doc[name].update(values)
        else:
            doc[name] = values
    _apply_env(doc, environ if environ is not None else os.environ, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    where = f"{source}: " if source else ""
    if errors:
        raise ConfigError(where + _describe(errors[0]))
    if doc["media"]["store"] == "s3" and not doc["media"]["s3_bucket"]:
        raise ConfigError(f"{where}media.s3_bucket: required when media.store is 's3'")
    origin = doc["server"]["origin"].rstrip("/")
    data_dir = (base_dir / doc["storage"]["data_dir"]).resolve()
    return Settings(
        server=ServerSettings(
            origin=origin,
            host=doc["server"]["host"],
            port=doc["server"]["port"],
            max_body_bytes=doc["server"]["max_body_bytes"],
            trusted_proxies=_proxy_networks(doc["server"]["trusted_proxies"], where),
            shutdown_timeout_s=float(doc["server"]["shutdown_timeout_s"]),
            drain_s=float(doc["server"]["drain_s"]),
            gc_freeze=doc["server"]["gc_freeze"],
            gc_threshold=doc["server"]["gc_threshold"],
            event_loop=doc["server"]["event_loop"],
        ),
        database=DatabaseSettings(
            url=resolve_database_url(doc["database"]["url"], base_dir),
            pool_size=doc["database"]["pool_size"],
            echo=doc["database"]["echo"],
        ),
        storage=StorageSettings(
            data_dir=data_dir,
            secret_key_file=(data_dir / doc["storage"]["secret_key_file"]).resolve(),
        ),
        federation=FederationSettings(
            allow_private_addresses=doc["federation"]["allow_private_addresses"],
            authorized_fetch=doc["federation"]["authorized_fetch"],
            network=doc["federation"]["network"],
            blocked_domains=tuple(doc["federation"]["blocked_domains"]),
            allowed_domains=tuple(doc["federation"]["allowed_domains"]),
            rfc9421_first_knock=doc["federation"]["rfc9421_first_knock"],
            inbox_rate_per_host=float(doc["federation"]["inbox_rate_per_host"]),
            inbox_burst_per_host=doc["federation"]["inbox_burst_per_host"],
        ),
        worker=WorkerSettings(
            in_process=doc["worker"]["in_process"],
            concurrency=doc["worker"]["concurrency"],
            poll_interval_s=float(doc["worker"]["poll_interval_s"]),
            deliveries_in_flight=doc["worker"]["deliveries_in_flight"],
            deliveries_per_host=doc["worker"]["deliveries_per_host"],
            signing_processes=doc["worker"]["signing_processes"],
        ),
        logging=LoggingSettings(
            level=doc["logging"]["level"],
            format=doc["logging"]["format"],
            access_log=doc["logging"]["access_log"],
        ),
        media=MediaSettings(
            max_bytes=doc["media"]["max_bytes"],
            dir=(data_dir / doc["media"]["dir"]).resolve(),
            allowed_types=tuple(doc["media"]["allowed_types"]),
            **{key: doc["media"][key] for key in _S3_KEYS},
        ),
        metrics=MetricsSettings(token=doc["metrics"]["token"], loopback_only=doc["metrics"]["loopback_only"]),
        events=EventSettings(reminder_before_s=doc["events"]["reminder_before_s"]),
        source=source,
    )


def resolve_database_url(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path absolute against the config file's directory."""
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        path = url[len(prefix) :]
        if path and path != ":memory:" and not path.startswith("/"):
            return prefix + str((base_dir / path).resolve())
    return url


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load the configuration file (or ``$ENTRAIDE_CONFIG``) and apply the environment.

    Raises:
        ConfigError: the file is missing, not valid TOML, or a key is unknown or invalid.
    """
    env = environ if environ is not None else os.environ
    chosen = path or env.get(CONFIG_ENV)
    if not chosen:
        raise ConfigError(f"no configuration file: pass --config FILE or set {CONFIG_ENV}")
    file = Path(chosen).expanduser()
    try:
        with file.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{file}: configuration file not found (create one with `entraide init`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    return build_settings(raw, base_dir=file.resolve().parent, environ=env, source=file)


def render_toml(doc: Mapping[str, Mapping[str, Any]]) -> str:
    """Write a two-level configuration document as TOML (the subset our config uses)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return json.dumps(str(v))  # a JSON string is a valid TOML basic string

    lines: list[str] = []
    for section, values in doc.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value(v)}" for key, v in values.items())
        lines.append("")
    return "\n".join(lines)

"""Settings from the command line and the environment, checked with clear messages.

A leaf: the standard library and the exception tree only, so every command
can read its settings without loading the server.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_CLOUD_URL = "https://agentation-mcp-cloud.vercel.app/api"
MAX_TIMER_MS = 2_147_483_647
"""The largest delay or timeout accepted, in ms (Node's timer limit, kept for the same env values)."""


CORS_ORIGINS_HELP = (
    "AGENTATION_CORS_ORIGINS must be a comma-separated list of http:// or https:// origins "
    "(scheme, host and optional port, nothing else), or * alone"
)


def is_loopback_name(host: str) -> bool:
    """`localhost`, `*.localhost`, `127.x.x.x` or `::1` (bracketed or not)."""
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case without a default port, or None if not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def parse_cors_origins(value: str | None) -> tuple[bool, frozenset[str]]:
    """(any origin allowed, extra origins) from `AGENTATION_CORS_ORIGINS`; raises `ConfigError`."""
    if value is None:
        return False, frozenset()
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if entries == ["*"]:
        return True, frozenset()
    origins: set[str] = set()
    for entry in entries:
        normalized = normalize_origin(entry) if entry != "*" else None
        if normalized is None:
            raise ConfigError(f"{CORS_ORIGINS_HELP}; {entry!r} is not one.")
        origins.add(normalized)
    return False, frozenset(origins)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Where webhooks go and how hard to try; delays and timeouts in milliseconds.

    `urls` are kept trimmed, without empty entries or repeats, in first-seen order.
    """

    urls: tuple[str, ...] = ()
    max_retries: int = 3
    base_delay_ms: int = 1000
    max_delay_ms: int = 30_000
    timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "urls", tuple(dict.fromkeys(url.strip() for url in self.urls if url.strip())))
        if not 0 <= self.max_retries <= 10:
            raise ValueError(f"max_retries must be from 0 to 10, not {self.max_retries}")
        for name in ("base_delay_ms", "max_delay_ms", "timeout_ms"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_TIMER_MS:
                raise ValueError(f"{name} must be from 1 to {MAX_TIMER_MS}, not {value}")


DEFAULT_PORT = 4747
DEFAULT_RETENTION_DAYS = 7
DEFAULT_MAX_BODY = 1024 * 1024


def shared_store_path(env: Mapping[str, str] | None = None) -> Path:
    """The store every server and command on this machine shares: `~/.agentation/store.db`, under `$HOME`."""
    home = (os.environ if env is None else env).get("HOME")
    return (Path(home) if home else Path.home()) / ".agentation" / "store.db"


def display_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `agentation-mcp server` needs to run."""

    port: int = DEFAULT_PORT
    host: str | None = None  # None: loopback only
    mcp_only: bool = False
    http_only: bool = False  # HTTP alone, stdin never read: runs until a signal
    channel: bool = False  # push each new annotation to the clients as a Claude Code channel message
    http_url: str | None = None  # set: the tools use that server's HTTP API
    api_key: str | None = None
    store_in_memory: bool = False
    store_path: Path = field(default_factory=shared_store_path)
    event_retention_days: int = DEFAULT_RETENTION_DAYS
    event_log: Path | None = None  # diagnostics: every event this process's hub publishes
    cors_any: bool = False
    cors_origins: frozenset[str] = frozenset()
    access_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    cloud_url: str = DEFAULT_CLOUD_URL
    mcp_idle_seconds: int = 30 * 60
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    warnings: tuple[str, ...] = ()

    @property
    def bind_host(self) -> str:
        return self.host or "127.0.0.1"


_INT = re.compile(r"^[0-9]+$")


def int_from_env(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> tuple[int, str | None]:
    """An integer setting; an unusable value keeps the default and says why."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default, None
    text = raw.strip()
    if not _INT.match(text) or not low <= int(text) <= high:
        return default, (f"{name}={raw!r} is not a whole number from {low} to {high}; using the default {default}.")
    return int(text), None


def webhook_settings_from_env(env: Mapping[str, str]) -> tuple[WebhookSettings, list[str]]:
    """Webhook URLs and retry settings, and a warning for each unusable number (which keeps its default)."""
    urls = [env.get("AGENTATION_WEBHOOK_URL", ""), *env.get("AGENTATION_WEBHOOKS", "").split(",")]
    defaults = WebhookSettings()
    warnings: list[str] = []

    def number(name: str, default: int, low: int, high: int) -> int:
        value, warning = int_from_env(env, name, default, low, high)
        if warning:
            warnings.append(warning)
        return value

    settings = WebhookSettings(
        urls=tuple(urls),
        max_retries=number("AGENTATION_WEBHOOK_MAX_RETRIES", defaults.max_retries, 0, 10),
        base_delay_ms=number("AGENTATION_WEBHOOK_BASE_DELAY_MS", defaults.base_delay_ms, 1, MAX_TIMER_MS),
        max_delay_ms=number("AGENTATION_WEBHOOK_MAX_DELAY_MS", defaults.max_delay_ms, 1, MAX_TIMER_MS),
        timeout_ms=number("AGENTATION_WEBHOOK_TIMEOUT_MS", defaults.timeout_ms, 1, MAX_TIMER_MS),
    )
    return settings, warnings


def cloud_base_url(env: Mapping[str, str]) -> str:
    """The cloud API's base URL: `AGENTATION_CLOUD_URL` if set, else the hosted one; no trailing slash.

    Raises ConfigError when the variable is not an http(s) URL.
    """
    value = env.get("AGENTATION_CLOUD_URL", "").strip()
    if not value:
        return DEFAULT_CLOUD_URL
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"AGENTATION_CLOUD_URL must be an http(s) base URL such as {DEFAULT_CLOUD_URL} (got {value!r})."
        )
    return value.rstrip("/")


def _port(value: str | None) -> int:
    if value is None:
        raise ConfigError("--port needs a value: a port number from 1 to 65535.")
    if not _INT.match(value) or not 0 < int(value) < 65536:
        raise ConfigError(f"--port must be a port number from 1 to 65535 (got {value!r}).")
    return int(value)


def _host(value: str) -> str:
    host = value.strip()
    if not host:
        raise ConfigError("--host needs an address, such as 127.0.0.1 or 0.0.0.0.")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare != "localhost":
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", bare):
                raise ConfigError(f"--host must be an IP address or a host name (got {value!r}).") from None
    return host


def _http_url(value: str | None) -> str:
    if not value:
        raise ConfigError("--http-url needs a URL, such as http://localhost:4747.")
    if not re.match(r"^https?://[^/?#\s]+", value):
        raise ConfigError(f"--http-url must be an http:// or https:// URL (got {value!r}).")
    return value.rstrip("/")


def parse_server_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    """The settings for `agentation-mcp server <argv>`; raises `ConfigError` on bad input."""
    env = os.environ if env is None else env
    port = DEFAULT_PORT
    host: str | None = None
    env_host = env.get("AGENTATION_HOST", "").strip()
    if env_host:
        host = _host(env_host)
    mcp_only = False
    http_only = False
    channel = False
    http_url: str | None = None
    api_key = env.get("AGENTATION_API_KEY") or None
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
        takes_value = name in ("--port", "--host", "--http-url", "--api-key")
        if takes_value and not eq:
            i += 1
        if name == "--port":
            port = _port(value)
        elif name == "--host":
            host = _host(value or "")
        elif name == "--http-url":
            http_url = _http_url(value)
        elif name == "--api-key":
            if not value:
                raise ConfigError("--api-key needs a key.")
            api_key = value
        elif arg == "--mcp-only":
            mcp_only = True
        elif arg == "--http-only":
            http_only = True
        elif arg == "--channel":
            channel = True
        else:
            raise ConfigError(f"Unknown option for 'server': {arg!r}. Run 'agentation-mcp help' for the options.")
        i += 1
    if http_only and mcp_only:
        raise ConfigError(
            "--http-only and --mcp-only cannot be used together: --http-only serves HTTP without MCP on stdio, "
            "--mcp-only MCP on stdio without HTTP."
        )
    if channel and http_url is not None:
        raise ConfigError(
            "--channel cannot be used with --http-url: the channel follows the local store's changes, "
            "and with --http-url the tools work on another server."
        )
    if http_only and http_url is not None:
        raise ConfigError(
            "--http-only cannot be used with --http-url: --http-url makes MCP on stdio use another server, "
            "and --http-only serves no MCP on stdio."
        )

    warnings: list[str] = []
    retention, warning = int_from_env(env, "AGENTATION_EVENT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, 0, 3650)
    if warning:
        warnings.append(warning)
    max_body, warning = int_from_env(env, "AGENTATION_MAX_BODY_BYTES", DEFAULT_MAX_BODY, 1024, 1 << 30)
    if warning:
        warnings.append(warning)
    mcp_idle, warning = int_from_env(env, "AGENTATION_MCP_IDLE_SECONDS", 30 * 60, 1, 7 * 24 * 3600)
    if warning:
        warnings.append(warning)
    cors_any, cors_origins = parse_cors_origins(env.get("AGENTATION_CORS_ORIGINS"))
    access_key = env.get("AGENTATION_ACCESS_KEY") or None
    if host is not None and not is_loopback_name(host) and not mcp_only and access_key is None:
        raise ConfigError(
            f"Binding to {host} would expose the server beyond this machine, so it needs an access key: "
            "set AGENTATION_ACCESS_KEY to a secret that clients send in the x-api-key header "
            "(remote MCP clients: --api-key), or bind 127.0.0.1."
        )
    cloud_url = cloud_base_url(env)
    webhooks, webhook_warnings = webhook_settings_from_env(env)
    warnings += webhook_warnings
    # One line per concern: the port, the modes, the remote server, the store, the access rules, the rest.
    # fmt: off
    return Settings(
        port=port, host=host,
        mcp_only=mcp_only, http_only=http_only, channel=channel,
        http_url=http_url, api_key=api_key, cloud_url=cloud_url,
        store_in_memory=env.get("AGENTATION_STORE") == "memory", store_path=shared_store_path(env),
        event_retention_days=retention,
        event_log=Path(env["AGENTATION_EVENT_LOG"]) if env.get("AGENTATION_EVENT_LOG") else None,
        cors_any=cors_any, cors_origins=cors_origins, access_key=access_key, max_body_bytes=max_body,
        mcp_idle_seconds=mcp_idle, webhooks=webhooks, warnings=tuple(warnings),
    )
    # fmt: on

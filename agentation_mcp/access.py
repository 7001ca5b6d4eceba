"""Who may talk to the HTTP server: the Origin allow-list, the Host check, the access key.

Safe by default: the server binds loopback, accepts pages from loopback
origins only (`localhost`, `*.localhost`, `127.x.x.x`, `[::1]`, any port),
and refuses requests whose `Host` header names anything else, which defeats
DNS rebinding. `AGENTATION_CORS_ORIGINS` adds origins (`*` alone allows
every origin). A server bound to another interface needs
`AGENTATION_ACCESS_KEY` and then checks it (`x-api-key`) on every route but
`/health`. Requests without an Origin header (curl, agents) are not pages
and pass the Origin check.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError

ALLOW_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = b"Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID"
EXPOSE_HEADERS = b"Mcp-Session-Id"
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


def _normalize_origin(origin: str) -> str | None:
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
        normalized = _normalize_origin(entry) if entry != "*" else None
        if normalized is None:
            raise ConfigError(f"{CORS_ORIGINS_HELP}; {entry!r} is not one.")
        origins.add(normalized)
    return False, frozenset(origins)


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    bind_host: str
    any_origin: bool = False
    extra_origins: frozenset[str] = frozenset()
    access_key: str | None = None

    @property
    def remote(self) -> bool:
        """Bound to an interface other than loopback."""
        return not is_loopback_name(self.bind_host)

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None or self.any_origin:
            return True
        normalized = _normalize_origin(origin)
        if normalized is None:
            return False
        if normalized in self.extra_origins:
            return True
        hostname = urlsplit(normalized).hostname or ""
        return is_loopback_name(hostname)

    def host_allowed(self, host_header: str | None) -> bool:
        if self.remote or not host_header:
            return True
        name = _host_name(host_header.strip()).lower()
        return is_loopback_name(name) or name == self.bind_host.lower()

    def key_accepted(self, given: str | None) -> bool:
        if self.access_key is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.access_key.encode())

    def cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        if self.any_origin:
            headers.append((b"access-control-allow-origin", b"*"))
        else:
            headers.append((b"vary", b"Origin"))
            if origin is not None:
                headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        headers += [
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]
        return headers

"""The MCP handshake, `tools/list` and `ping` on stdio, answered without the SDK.

Importing the MCP SDK takes most of a start-up (its models for every protocol
version), so the stdio front end answers the first messages of a session
itself: `initialize` for the protocol versions listed here, then `tools/list`
and `ping`, with the same bytes the SDK would send for this server (a test
compares them, for every version listed and with the channel on and off).
The answer's parts come from the one source the SDK's server is built from
too: the tools' specs (`specs`) and the declared capabilities (`features`).

Only the plain forms are answered here; anything else goes to the SDK, which
then gets the client's own `initialize` (and `notifications/initialized`)
replayed first, so its session is in the same state:
- an `initialize` asking for a version not in `VERSIONS`, with `_meta`, or
  with anything in its capabilities or client info beyond the plain shapes
  checked below (the SDK validates those, and may refuse them);
- a second `initialize`, and everything before the first one;
- `tools/list` or `ping` with any params but none or `{}`.
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import __version__
from ..models import JsonObject
from .features import declared_capabilities, instructions
from .specs import SPECS

# The handshake protocol versions answered here (those of the SDK this was checked against).
VERSIONS = frozenset(("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"))
SERVER_NAME = "agentation"

_INITIALIZE_PARAMS = frozenset(("protocolVersion", "capabilities", "clientInfo"))
_CLIENT_INFO = frozenset(("name", "version", "title", "description", "websiteUrl"))
# Capability -> the keys its object may hold, each with an empty object; None: any object of objects.
_CAPABILITIES: dict[str, frozenset[str] | None] = {
    "experimental": None,
    "extensions": None,
    "sampling": frozenset(("context", "tools")),
    "elicitation": frozenset(("form", "url")),
    "roots": frozenset(),
}

RequestId = str | int


def _plain_capabilities(capabilities: object) -> bool:
    if not isinstance(capabilities, dict):
        return False
    for name, value in capabilities.items():
        if name not in _CAPABILITIES or not isinstance(value, dict):
            return False
        allowed = _CAPABILITIES[name]
        if allowed is None:
            if not all(isinstance(inner, dict) for inner in value.values()):
                return False
        elif name == "roots":
            if not value.keys() <= {"listChanged"} or not isinstance(value.get("listChanged", False), bool):
                return False
        elif not value.keys() <= allowed or any(inner != {} for inner in value.values()):
            return False
    return True


def _plain_client_info(info: object) -> bool:
    return (
        isinstance(info, dict)
        and info.keys() <= _CLIENT_INFO
        and "name" in info
        and "version" in info
        and all(isinstance(value, str) for value in info.values())
    )


def requested_version(params: object) -> str | None:
    """The version a plain `initialize` asks for, when it is one of `VERSIONS`; None sends it to the SDK."""
    if not isinstance(params, dict) or params.keys() != _INITIALIZE_PARAMS:
        return None
    version = params["protocolVersion"]
    if not isinstance(version, str) or version not in VERSIONS:
        return None
    if not _plain_capabilities(params["capabilities"]) or not _plain_client_info(params["clientInfo"]):
        return None
    return version


def _response(request_id: RequestId, result: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + orjson.dumps(request_id) + b',"result":' + result + b"}\n"


class Answers:
    """The lines answering the handshake, `tools/list` and `ping` for a server as configured."""

    def __init__(self, *, with_channel: bool) -> None:
        self._capabilities = declared_capabilities(with_channel=with_channel)
        self._instructions = instructions(with_channel=with_channel)
        self._tools = orjson.dumps({"tools": [spec.wire() for spec in SPECS]})

    def initialize(self, request_id: RequestId, version: str) -> bytes:
        """The answer to a plain `initialize` asking for `version` (one of `VERSIONS`)."""
        result: JsonObject = {"capabilities": self._capabilities}
        if self._instructions is not None:
            result["instructions"] = self._instructions
        result["protocolVersion"] = version
        result["serverInfo"] = {"name": SERVER_NAME, "version": __version__}
        return _response(request_id, orjson.dumps(result))

    def tools_list(self, request_id: RequestId) -> bytes:
        return _response(request_id, self._tools)

    @staticmethod
    def ping(request_id: RequestId) -> bytes:
        return _response(request_id, b"{}")


def no_params(message: dict[str, Any]) -> bool:
    """Whether a request carries no params, or empty ones (the only `tools/list` and `ping` answered here)."""
    return message.get("params") in (None, {})

"""The handshake, `tools/list` and `ping` answered without the SDK: the bytes the SDK's own server sends.

The SDK's server runs in-process, built as the service builds it (the tools and every feature, with
the channel on and off), and its answers are dumped the way its stdio transport writes them. Every
protocol version `handshake` answers is compared; an `initialize` it does not take is checked to be one
the SDK answers differently or refuses, or one it leaves to the SDK by rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from agentation_mcp.agent.features import Features
from agentation_mcp.agent.handshake import VERSIONS, Answers, no_params, requested_version
from agentation_mcp.agent.sdk_server import mcp_server_for
from agentation_mcp.agent.tools import LocalBackend, build_handlers

from .conftest import Store, running_writer
from .sdk_in_process import Exchange, exchanging_with

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def sdk_server(opened: Store, *, with_channel: bool) -> AsyncIterator[Exchange]:
    """The SDK's server as the service builds it; each exchange returns the answer as its stdio transport
    writes it (None for a notification)."""
    hub = opened.hub()
    async with running_writer(opened, hub) as writer:
        features = Features(LocalBackend(writer, hub, opened.reader), with_channel=with_channel)
        server = mcp_server_for(build_handlers(writer, hub, opened.reader), features=features)
        async with exchanging_with(server) as exchange:

            async def line(message: dict[str, Any]) -> bytes | None:
                answer = await exchange(message)
                return None if answer is None else answer + b"\n"

            yield line


def initialize(version: str, request_id: int | str = 0, **params: Any) -> dict[str, Any]:
    body = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": {**body, **params}}


def request(request_id: int | str, method: str, **rest: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, **rest}


def test_it_answers_every_handshake_version_the_sdk_speaks() -> None:
    assert set(HANDSHAKE_PROTOCOL_VERSIONS) == VERSIONS


@pytest.mark.parametrize("with_channel", [False, True], ids=["plain", "channel"])
@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
async def test_each_answer_is_the_line_the_sdk_sends(opened: Store, version: str, with_channel: bool) -> None:
    answers = Answers(with_channel=with_channel)
    with trio.fail_after(30):
        async with sdk_server(opened, with_channel=with_channel) as sdk:
            client_capabilities = {"roots": {"listChanged": True}, "elicitation": {"form": {}}, "sampling": {}}
            message = initialize(version, "init-1", capabilities=client_capabilities)
            assert requested_version(message["params"]) == version
            assert answers.initialize("init-1", version) == await sdk(message)
            await sdk({"jsonrpc": "2.0", "method": "notifications/initialized"})
            ids: list[int | str] = [1, "two", 2**53]
            params: list[dict[str, Any]] = [{}, {"params": {}}, {"params": None}]
            for request_id, rest in zip(ids, params, strict=True):
                listing = request(request_id, "tools/list", **rest)
                assert no_params(listing)
                assert answers.tools_list(request_id) == await sdk(listing)
                ping = request(request_id, "ping", **rest)
                assert answers.ping(request_id) == await sdk(ping)


CLIENT_INFO = st.fixed_dictionaries(
    {"name": st.text(max_size=10), "version": st.text(max_size=5)},
    optional={"title": st.text(max_size=5), "description": st.text(max_size=5), "websiteUrl": st.text(max_size=5)},
)
CAPABILITIES = st.fixed_dictionaries(
    {},
    optional={
        "roots": st.fixed_dictionaries({}, optional={"listChanged": st.booleans()}),
        "sampling": st.fixed_dictionaries({}, optional={"context": st.just({}), "tools": st.just({})}),
        "elicitation": st.fixed_dictionaries({}, optional={"form": st.just({}), "url": st.just({})}),
        "experimental": st.dictionaries(st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.integers())),
        "extensions": st.dictionaries(st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.booleans())),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.sampled_from(HANDSHAKE_PROTOCOL_VERSIONS),
    info=CLIENT_INFO,
    capabilities=CAPABILITIES,
    request_id=st.integers(min_value=-(2**53), max_value=2**53) | st.text(max_size=8),
)
async def test_any_plain_initialize_gets_the_sdks_answer(
    opened: Store, version: str, info: dict[str, Any], capabilities: dict[str, Any], request_id: int | str
) -> None:
    message = initialize(version, request_id, clientInfo=info, capabilities=capabilities)
    assert requested_version(message["params"]) == version
    with trio.fail_after(30):
        async with sdk_server(opened, with_channel=False) as sdk:
            assert Answers(with_channel=False).initialize(request_id, version) == await sdk(message)


@pytest.mark.parametrize(
    "params",
    [
        {"protocolVersion": "2099-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
        {"protocolVersion": "2025-06-18", "capabilities": [], "clientInfo": {"name": "t", "version": "1"}},
        {"protocolVersion": "2025-06-18", "capabilities": {"roots": {"listChanged": 5}}, "clientInfo": {}},
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {"roots": {"listChanged": 5}},
            "clientInfo": {"name": "t", "version": "1"},
        },
        {"protocolVersion": "2025-06-18", "capabilities": {"tasks": {}}, "clientInfo": {"name": "t", "version": "1"}},
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": 1}},
        {"protocolVersion": 20250618, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        {"capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
            "_meta": {"progressToken": 1},
        },
    ],
)
def test_an_initialize_that_is_not_plain_is_left_to_the_sdk(params: dict[str, Any]) -> None:
    assert requested_version(params) is None


def test_tools_list_and_ping_with_params_are_left_to_the_sdk() -> None:
    assert not no_params(request(1, "tools/list", params={"cursor": "x"}))
    assert not no_params(request(1, "ping", params={"_meta": {}}))

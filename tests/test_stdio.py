"""MCP over stdio against hostile lines: a real server process, raw bytes on its stdin.

Every line that is not a JSON-RPC message the server can read gets the
JSON-RPC error it deserves, with the id when one can be read, and one log
line on stderr; the session goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import pytest
import trio

from agentation_mcp.agent.sdk_stdio import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, refusal_for
from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.store import reads

from .conftest import ANNOTATION, commit_to_file, open_store, server_env

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


class RawSession:
    """A server process spoken to in raw lines."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.buffer = b""
        self.handshake: Any = None  # the answer to `initialize`, once `initialized_server` has it

    async def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data + b"\n")

    async def receive(self) -> Any:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            chunk = await self.process.stdout.receive_some(65536)
            assert chunk, "the server closed stdout"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


@asynccontextmanager
async def raw_server(
    home: Path, *python_options: str, stderr: IO[bytes] | int | None = None
) -> AsyncIterator[RawSession]:
    """A real `server --mcp-only` on `home` (Python run with `python_options`), spoken to in raw lines; on leaving,
    stdin closes and it must exit 0."""
    process = await trio.lowlevel.open_process(
        [sys.executable, *python_options, "-m", "agentation_mcp", "server", "--mcp-only"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=server_env(home),
    )
    try:
        with trio.fail_after(60):
            yield RawSession(process)
            assert process.stdin is not None
            await process.stdin.aclose()
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def initialized_server(
    home: Path, *python_options: str, stderr: IO[bytes] | int | None = None
) -> AsyncIterator[RawSession]:
    """`raw_server`, past the handshake (its answer kept as `handshake`)."""
    async with raw_server(home, *python_options, stderr=stderr) as raw:
        await raw.send(json.dumps(INITIALIZE))
        raw.handshake = await raw.receive()
        assert raw.handshake["id"] == 1
        await raw.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        yield raw


HOSTILE: list[tuple[str, int, Any, str]] = [
    ("this is not json", PARSE_ERROR, None, "not valid JSON"),
    ('{"jsonrpc": "2.0", "id": 2, "method": "ping"', PARSE_ERROR, None, "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, PARSE_ERROR, None, "nested too deeply"),
    ('[{"jsonrpc": "2.0", "id": 3, "method": "ping"}]', INVALID_REQUEST, None, "batches"),
    ('"just a string"', INVALID_REQUEST, None, "must be a JSON object"),
    ('{"id": 4, "method": "ping"}', INVALID_REQUEST, 4, '"jsonrpc" must be "2.0"'),
    ('{"jsonrpc": "1.0", "id": "five", "method": "ping"}', INVALID_REQUEST, "five", '"jsonrpc" must be "2.0"'),
    ('{"jsonrpc": "2.0", "id": 6, "method": 12}', INVALID_REQUEST, 6, "not a JSON-RPC 2.0"),
    ('{"jsonrpc": "2.0", "id": 7, "method": "ping", "params": [1]}', INVALID_REQUEST, 7, "not a JSON-RPC 2.0"),
    (
        '{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "agentation_reply",'
        ' "arguments": {"annotationId": "a", "message": "x\\ud800"}}}',
        INVALID_PARAMS,
        8,
        "params.arguments.message must be valid Unicode text",
    ),
    (
        '{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "agentation_reply",'
        ' "arguments": {"annotationId": "a", "\\udc00": "x"}}}',
        INVALID_PARAMS,
        9,
        "params.arguments.\\udc00 must be valid Unicode text",
    ),
]


@pytest.mark.parametrize(("line", "code", "request_id", "text"), HOSTILE)
def test_each_unreadable_line_has_its_answer(line: str, code: int, request_id: Any, text: str) -> None:
    refusal = refusal_for(line)
    assert refusal.error.code == code
    assert refusal.id == request_id
    assert text in refusal.error.message


async def test_the_server_answers_every_hostile_line_and_keeps_serving(tmp_path: Path) -> None:
    async with initialized_server(tmp_path / "home", stderr=subprocess.PIPE) as session:
        for line, code, request_id, text in HOSTILE:
            await session.send(line)
            reply = await session.receive()
            assert reply["jsonrpc"] == "2.0"
            assert reply["id"] == request_id
            assert reply["error"]["code"] == code
            assert text in reply["error"]["message"]

        await session.send("")  # an empty line is no message, and gets no answer
        await session.send(json.dumps({"jsonrpc": "2.0", "id": 99, "method": "ping"}))
        assert await session.receive() == {"jsonrpc": "2.0", "id": 99, "result": {}}
    assert session.process.stderr is not None
    stderr = b""
    with trio.fail_after(10):
        while chunk := await session.process.stderr.receive_some(65536):
            stderr += chunk
    logged = [line for line in stderr.decode().splitlines() if "Answered a message on stdin with an error" in line]
    assert len(logged) == len(HOSTILE)


async def test_pipelined_calls_answered_directly_and_by_the_sdk_each_get_one_whole_line(tmp_path: Path) -> None:
    """Quick tool calls are answered outside the SDK (`direct_calls`) and the rest by it, on one stdout: a
    burst of both, sent in one write, gets every answer once, each on a line of its own."""
    home = tmp_path / "home"
    session = commit_to_file(home, CreateSession(url="http://localhost:3000/"))
    annotation = commit_to_file(home, CreateAnnotation.from_body(session["id"], ANNOTATION))
    calls: dict[Any, dict[str, Any]] = {}
    for i in range(150):
        kind = i % 5
        if kind == 0:
            params = {"name": "agentation_reply", "arguments": {"annotationId": annotation["id"], "message": f"n{i}"}}
        elif kind == 1:
            params = {"name": "agentation_acknowledge", "arguments": {"annotationId": annotation["id"]}}
        elif kind == 2:
            params = {"name": "agentation_get_all_pending", "_meta": {"progressToken": i}}
        elif kind == 3:
            calls[f"list-{i}"] = {"jsonrpc": "2.0", "id": f"list-{i}", "method": "tools/list"}
            continue
        else:
            calls[f"ping-{i}"] = {"jsonrpc": "2.0", "id": f"ping-{i}", "method": "ping"}
            continue
        calls[i] = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}
    async with initialized_server(home) as raw:
        await raw.send("\n".join(json.dumps(message) for message in calls.values()))
        answers: dict[Any, Any] = {}
        while len(answers) < len(calls):
            answer = await raw.receive()
            assert answer["id"] not in answers, f"answered twice: {answer['id']}"
            answers[answer["id"]] = answer
    assert answers.keys() == calls.keys()
    for request_id, message in calls.items():
        result = answers[request_id]["result"]
        if message["method"] == "tools/list":
            assert len(result["tools"]) == 9
        elif message["method"] == "tools/call":
            assert result["isError"] is False
            assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
            if message["params"]["name"] == "agentation_reply":
                assert result["structuredContent"]["message"] == f"n{request_id}"
    with open_store(home / ".agentation" / "store.db") as st:
        thread = reads.get_annotation(st.reader, annotation["id"])["thread"]
    assert sorted(m["content"] for m in thread) == sorted(f"n{i}" for i in range(0, 150, 5))


async def test_writes_sent_one_after_another_without_waiting_commit_in_that_order(tmp_path: Path) -> None:
    """As Claude Code sends parallel tool calls: a reply and then a resolve on one annotation, in one write.
    The thread must read in the order they were sent, every time (trio starts a burst's tasks in any order)."""
    home = tmp_path / "home"
    session = commit_to_file(home, CreateSession(url="http://localhost:3000/"))
    ids = [commit_to_file(home, CreateAnnotation.from_body(session["id"], ANNOTATION))["id"] for _ in range(30)]
    async with initialized_server(home) as raw:
        for n, annotation_id in enumerate(ids):
            calls = [
                ("agentation_reply", {"annotationId": annotation_id, "message": "first"}),
                ("agentation_acknowledge", {"annotationId": annotation_id}),
                ("agentation_resolve", {"annotationId": annotation_id, "summary": "second"}),
            ]
            burst = [
                json.dumps({"jsonrpc": "2.0", "id": f"{n}-{i}", "method": "tools/call", "params": params})
                for i, params in enumerate({"name": name, "arguments": args} for name, args in calls)
            ]
            await raw.send("\n".join(burst))
            answers = [await raw.receive() for _ in burst]
            assert all(answer["result"]["isError"] is False for answer in answers), answers
    with open_store(home / ".agentation" / "store.db") as st:
        for annotation_id in ids:
            annotation = reads.get_annotation(st.reader, annotation_id)
            assert [m["content"] for m in annotation["thread"]] == ["first", "Resolved: second"]
            assert annotation["status"] == "resolved", "the acknowledge did not overtake the resolve"


def _request(request_id: int | str, method: str, **params: Any) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params:
        message["params"] = params
    return json.dumps(message)


LIST_SESSIONS = {"name": "agentation_list_sessions", "arguments": {}}


async def test_a_session_of_handshake_tools_list_and_calls_never_loads_the_sdk(tmp_path: Path) -> None:
    """`python -X importtime` lists every module the process imported, on stderr, as it imports it."""
    home = tmp_path / "home"
    imports = tmp_path / "importtime.txt"
    with imports.open("wb") as stderr:
        async with initialized_server(home, "-X", "importtime", stderr=stderr) as raw:
            assert raw.handshake["result"]["protocolVersion"] == "2025-06-18"
            await raw.send(_request(2, "tools/list"))
            assert len((await raw.receive())["result"]["tools"]) == 9
            await raw.send(_request(3, "tools/call", **LIST_SESSIONS))
            assert (await raw.receive())["result"]["structuredContent"] == {"sessions": []}
            await raw.send(_request(4, "ping"))
            assert await raw.receive() == {"jsonrpc": "2.0", "id": 4, "result": {}}
    loaded = {line.rsplit("|", 1)[-1].strip() for line in imports.read_text().splitlines() if "|" in line}
    assert "agentation_mcp.agent.stdio" in loaded
    assert not {name for name in loaded if name.split(".")[0] in ("mcp", "mcp_types", "pydantic")}


async def test_the_sdk_loaded_after_our_handshake_serves_the_session_in_the_same_state(tmp_path: Path) -> None:
    async with initialized_server(tmp_path / "home") as raw:
        await raw.send(_request(2, "tools/list"))
        ours = await raw.receive()
        await raw.send(_request(3, "prompts/list"))  # the SDK's: loads it, with our handshake replayed
        prompts = await raw.receive()
        assert prompts["id"] == 3
        assert prompts["result"]["prompts"]
        await raw.send(_request(4, "resources/subscribe", uri="agentation://pending"))
        assert await raw.receive() == {"jsonrpc": "2.0", "id": 4, "result": {}}, "initialized as the client is"
        await raw.send(_request(5, "tools/call", **LIST_SESSIONS))
        assert (await raw.receive())["id"] == 5
        await raw.send(json.dumps({**INITIALIZE, "id": 6}))  # a second handshake: the SDK's from now on
        again = await raw.receive()
        assert again["id"] == 6
        await raw.send(_request(7, "tools/list"))
        assert {**(await raw.receive()), "id": 2} == ours, "the SDK lists the same tools"


async def test_a_handshake_it_does_not_answer_goes_to_the_sdk_with_everything_after_it(tmp_path: Path) -> None:
    async with raw_server(tmp_path / "home") as raw:
        await raw.send(_request(1, "tools/list"))
        refused = await raw.receive()
        assert refused["id"] == 1
        assert "error" in refused, "the SDK refuses a listing before the handshake"
        params = {**INITIALIZE["params"], "protocolVersion": "2099-01-01"}  # type: ignore[dict-item]
        await raw.send(json.dumps({**INITIALIZE, "id": 2, "params": params}))
        answer = await raw.receive()
        assert answer["id"] == 2
        assert answer["result"]["protocolVersion"] == "2025-11-25", "the SDK's newest"
        await raw.send(_request(3, "tools/call", **LIST_SESSIONS))
        assert (await raw.receive())["result"]["structuredContent"] == {"sessions": []}

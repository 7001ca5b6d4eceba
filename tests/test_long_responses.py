"""A response body too long to join to its head goes out after it, whole, on a connection that stays usable.

`GET /pending` of 400 annotations (about 360 KB, over the 256 KiB joined
with the head): its length as announced, the same JSON as the list read
from the store, and the same again from the request pipelined behind it.
"""

from __future__ import annotations

import json

import pytest
import trio

from agentation_mcp.commands import CreateAnnotation, CreateSession
from agentation_mcp.store import reads

from .conftest import Store, commit
from .test_http_wire import Client, get, http_server

COUNT = 400


@pytest.mark.anyio
async def test_a_long_pending_list_arrives_whole_and_the_connection_goes_on(opened: Store) -> None:
    [(session, _)] = commit(opened.conn, CreateSession(url="http://localhost:3000/"))
    body = {"comment": "x" * 600, "element": "h2", "elementPath": "main > h2", "x": 1.5, "y": 2}
    commit(
        opened.conn,
        *(
            CreateAnnotation.from_body(session["id"], {**body, "timestamp": 1_700_000_000_000 + i})
            for i in range(COUNT)
        ),
    )
    expected = {"count": COUNT, "annotations": reads.pending_annotations(opened.reader, None)}
    with trio.fail_after(20):
        async with http_server(opened) as server:
            client = await Client.connect(server.port)
            try:
                await client.send(get("/pending") + get("/pending"))
                first = await client.response()
                last = await client.response()
            finally:
                await client.aclose()
    assert first.status == last.status == 200
    assert len(first.body) > 256 * 1024
    assert int(first.headers["content-length"]) == len(first.body)
    assert json.loads(first.body) == expected
    assert last.body == first.body

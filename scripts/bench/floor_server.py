"""The floor for start-up: a bare `mcp` low-level server, no tools, answering `initialize` under `trio.run`.

Nothing can start faster on this SDK: the start-up workload reports it beside ours.
"""

from __future__ import annotations

import trio
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server


async def main() -> None:
    server: Server[object] = Server("floor")
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    trio.run(main)

"""The MCP side: tool specs and handlers, direct calls, a client's write order, stdio and the `/mcp` app.

The only package that imports the `mcp` SDK. It imports the top level, the store and the clients, never the web side.
"""

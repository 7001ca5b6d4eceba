"""The HTTP side: the wire, the gate and access rules, the toolbar's API, SSE streams, webhooks and the cloud relay.

It imports the top level and the store, never the agent (MCP) side: the `/mcp` app is handed to it as an ASGI app.
"""

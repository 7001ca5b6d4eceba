"""agentation-mcp: the Agentation annotation server (MCP over stdio and HTTP, one SQLite store)."""

__version__ = "0.1.0"
__all__ = ["__version__"]

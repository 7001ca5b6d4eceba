"""Which module may import what (DESIGN.md): checked from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import agentation_mcp

PACKAGE = Path(agentation_mcp.__file__).parent
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "access": {"config"},
    "config": {"errors"},
    "models": set(),
    "commands": {"errors", "models"},
    "schema": {"errors"},
    "faults": {"errors"},
    "store": {"errors", "faults"},
    "reads": {"errors", "faults", "models"},
    "changes": {"commands", "errors", "models", "reads"},
    "transactions": {"changes", "commands", "errors", "faults", "models", "store"},
    "hub": {"errors", "models"},
    "writer": {"store", "transactions", "hub", "commands", "errors", "models"},
    "watch": {"errors", "hub", "models", "reads"},
    "sse": {"models"},
    "mcp_tools": {"commands", "errors", "hub", "models", "reads", "watch", "writer"},
    "stdio": {"commands", "errors"},
    "http_wire": set(),
    "http_server": {"http_wire"},
    "asgi": {"http_wire"},
    "http_gate": {"access", "http_wire", "models"},
    "http_routes": {"commands", "errors", "http_wire", "models", "reads", "sse_streams", "writer"},
    "sse_streams": {"http_wire", "hub", "models", "reads", "sse"},
    "http_api": {
        "access",
        "asgi",
        "errors",
        "http_gate",
        "http_routes",
        "http_wire",
        "hub",
        "models",
        "sse",
        "sse_streams",
        "reads",
        "writer",
    },
    "webhooks": {"config", "models"},
    "cloud": {"asgi", "config", "models"},
    "service": {
        "cloud",
        "webhooks",
        "access",
        "config",
        "schema",
        "store",
        "reads",
        "transactions",
        "hub",
        "models",
        "mcp_tools",
        "stdio",
        "writer",
        "http_api",
        "http_server",
        "http_wire",
        "asgi",
    },
    "cli": {"config", "errors", "service"},
}
ONLY = {
    "apsw": {"schema", "store", "faults", "reads", "changes", "transactions"},
    "mcp": {"mcp_tools", "stdio"},
    "mcp_types": {"mcp_tools", "stdio"},
    "httptools": {"http_wire"},
    "hypercorn": set(),
    "httpx2": {"webhooks", "cloud", "service"},
    "starlette": set(),
}


def _imports(module: str) -> tuple[set[str], set[str]]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    local: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.module:
                    local.add(node.module.split(".")[0])
                else:
                    local.update(alias.name for alias in node.names)
            elif node.module:
                external.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            external.update(alias.name.split(".")[0] for alias in node.names)
    return local - {"__init__"}, external


def test_modules_import_only_what_the_design_allows() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(ALLOWED)
    for module in modules:
        local, external = _imports(module)
        assert local - {""} <= ALLOWED[module] | {"__version__"}, module
        for library, users in ONLY.items():
            if library in external:
                assert module in users, f"{module} imports {library}"


def test_nothing_imports_service_or_cli() -> None:
    for module in ALLOWED:
        local, _ = _imports(module)
        assert not local & {"service", "cli"} or module == "cli", module

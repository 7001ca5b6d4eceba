"""Which module may import what (DESIGN.md): checked from the source with ast."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import agentation_mcp

from .conftest import server_env

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
    "watch": {"errors", "hub", "models", "reads", "remote"},
    "sse": {"models"},
    "mcp_tools": {
        "commands",
        "errors",
        "hub",
        "models",
        "operations",
        "reads",
        "remote",
        "watch",
        "write_order",
        "writer",
    },
    "write_order": set(),
    "direct_calls": {"mcp_tools", "write_order"},
    "stdio": {"commands", "direct_calls", "errors"},
    "http_wire": set(),
    "http_server": {"config", "http_wire"},
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
    "http_service": {
        "access",
        "asgi",
        "cloud",
        "config",
        "http_api",
        "http_server",
        "http_wire",
        "hub",
        "mcp_tools",
        "reads",
        "webhooks",
        "writer",
    },
    "service": {
        "direct_calls",
        "http_service",
        "config",
        "schema",
        "store",
        "reads",
        "remote",
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
    "operations": {"commands", "errors", "models"},
    "annotation_client": {"commands", "errors", "models", "reads", "schema", "store", "transactions"},
    "remote": {"commands", "errors", "models"},
    "cli": {
        "annotation_client",
        "config",
        "errors",
        "hub",
        "models",
        "operations",
        "reads",
        "remote",
        "schema",
        "service",
        "store",
    },
}
ONLY = {
    "apsw": {"schema", "store", "faults", "reads", "changes", "transactions"},
    "mcp": {"mcp_tools", "stdio", "http_service"},
    "mcp_types": {"mcp_tools", "stdio"},
    "httptools": {"http_wire"},
    "hypercorn": set(),
    "httpx2": {"webhooks", "cloud", "http_service", "remote", "cli"},
    "starlette": set(),
}


def _imports(module: str) -> tuple[set[str], set[str]]:
    """The package's modules and the libraries that `module` (a file, or a sub-package's files) imports."""
    folder = PACKAGE / module
    files = sorted(folder.glob("*.py")) if folder.is_dir() else [PACKAGE / f"{module}.py"]
    depth = 2 if folder.is_dir() else 1  # the level of a relative import that reaches the package
    local: set[str] = set()
    external: set[str] = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == depth:
                    if node.module:
                        local.add(node.module.split(".")[0])
                    else:
                        local.update(alias.name for alias in node.names)
                elif not node.level and node.module:
                    external.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                external.update(alias.name.split(".")[0] for alias in node.names)
    return local - {"__init__"}, external


def test_modules_import_only_what_the_design_allows() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    modules |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
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


def test_commands_other_than_server_load_neither_the_sdk_nor_the_http_stack(tmp_path: Path) -> None:
    probe = (
        "import sys; from agentation_mcp.cli import main; "
        "codes = [main(['help']), main(['pending', '--json']), main(['sessions']), main(['doctor', '--json'])]; "
        "print(codes); print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=server_env(tmp_path), capture_output=True, text=True, timeout=30, check=True
    )
    codes, loaded = done.stdout.splitlines()[-2:]
    assert codes.startswith("[0, 0, 0, ")
    modules = set(loaded.split())
    heavy = {
        "mcp",
        "mcp_types",
        "httpx2",
        "httptools",
        "pydantic",
        "agentation_mcp.service",
        "agentation_mcp.http_wire",
    }
    assert not modules & heavy

"""The rules between the package's parts (docs/architecture.md), checked from the source with ast.

Each part is a top-level module or a subpackage. A rule says which parts a part
may import and which libraries only it may import; a new module inside a part
needs no entry here. Imports inside functions count like any other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import agentation_mcp

from .conftest import server_env

PACKAGE = Path(agentation_mcp.__file__).parent
TOP = {"errors", "models", "config", "commands", "operations"}
SUBPACKAGES = {"store", "clients", "web", "agent", "cli"}

# part -> the parts it may import besides itself.
MAY_IMPORT: dict[str, set[str]] = {
    **dict.fromkeys(TOP, TOP),
    "store": TOP,
    "clients": TOP | {"store"},
    "web": TOP | {"store"},
    "agent": TOP | {"store", "clients"},
    "service": TOP | {"store", "clients", "web", "agent"},
    "cli": TOP | {"store", "clients", "service"},
    "__main__": {"cli"},
}
# library -> the only parts that may import it.
ONLY: dict[str, set[str]] = {
    "apsw": {"store"},
    "mcp": {"agent"},
    "mcp_types": {"agent"},
    "pydantic": {"agent"},
    "httptools": {"web"},
    "httpx2": {"web", "clients", "agent", "cli"},
    "importlib": {"cli"},  # `importlib.metadata` for the installed version; no module is loaded by name
}
# The deliberate lazy imports: the server loads the HTTP side on a worker thread once stdio serves, and the `/mcp`
# app (with the SDK) at its first request. (The command line imports `service` inside the `server` command for the
# same reason.)
LAZY_HTTP = ("service", {"_load_http": "agentation_mcp.web.app", "_load_mcp_app": "agentation_mcp.agent.http"})
# On stdio the SDK loads when a message first needs it: `agent.stdio.load_sdk` is the one import of its session.
LAZY_SDK = ("agentation_mcp.agent.stdio", "load_sdk", "agentation_mcp.agent.sdk_stdio")
SDK = ("mcp", "mcp_types", "pydantic")


def _part(module: str) -> str:
    """The part of the package that `module` (a dotted name under agentation_mcp) belongs to."""
    return module.split(".")[1] if "." in module else ""


def _files(package: Path = PACKAGE) -> Iterator[tuple[str, Path]]:
    for file in sorted(package.rglob("*.py")):
        parts = file.relative_to(package.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), file


def _imports(module: str, file: Path, package: Path = PACKAGE) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(absolute module imported, node, at module level) for every import in `file` of `package`."""
    is_package = file.name == "__init__.py"
    tree = ast.parse(file.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if (package.parent / name.replace(".", "/")).is_dir():  # `from .store import reads`: each module
                for alias in node.names:
                    yield f"{name}.{alias.name}", node, id(node) in top_level
            else:
                yield name, node, id(node) in top_level
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node, id(node) in top_level


def _function_of(file: Path, node: ast.stmt) -> str | None:
    for func in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        inside = isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            getattr(inner, "lineno", None) == node.lineno for inner in ast.walk(func)
        )
        if inside:
            return getattr(func, "name", None)
    return None


def test_every_part_is_known() -> None:
    parts = {_part(module) for module, _ in _files()} - {""}
    assert parts <= TOP | SUBPACKAGES | {"service", "__main__", "__version__"}, parts - set(MAY_IMPORT)
    assert not (PACKAGE / "http").exists()  # would shadow the standard library
    assert not (PACKAGE / "mcp").exists()  # would shadow the SDK


def _broken_rules(package: Path) -> list[str]:
    """Every import in `package` (a tree laid out like ours) that its part's rule does not allow."""
    broken = []
    for module, file in _files(package):
        part = _part(module)
        for name, node, _ in _imports(module, file, package):
            if name.startswith("agentation_mcp."):
                target = _part(name)
                if target in ("", part, "__version__"):
                    continue
                if target not in MAY_IMPORT.get(part, TOP if not part else set()):
                    broken.append(f"{file.relative_to(package)}:{node.lineno}: {part or '__init__'} imports {name}")
            else:
                library = name.split(".")[0]
                if library in ONLY and part not in ONLY[library]:
                    broken.append(f"{file.relative_to(package)}:{node.lineno}: {part} imports {library}")
    return broken


def test_parts_import_only_what_their_rule_allows() -> None:
    assert _broken_rules(PACKAGE) == []


def test_the_command_line_loads_the_server_only_inside_the_server_command() -> None:
    for module, file in _files():
        if _part(module) == "cli":
            for name, node, at_top in _imports(module, file):
                if _part(name) == "service":
                    assert not at_top, f"{file}:{node.lineno}"


def test_the_http_side_is_loaded_only_by_its_lazy_imports() -> None:
    owner, loaders = LAZY_HTTP
    seen = set()
    for module, file in _files():
        if _part(module) != "service":
            continue
        for name, node, at_top in _imports(module, file):
            if _part(name) == "web" or name == "agentation_mcp.agent.http":
                assert not at_top, f"{file}:{node.lineno} imports {name}"
                assert loaders.get(_function_of(file, node) or "") == name, f"{file}:{node.lineno} imports {name}"
                seen.add(name)
    assert owner == "service"
    assert seen == set(loaders.values())


def test_the_rules_catch_a_broken_import(tmp_path: Path) -> None:
    """The checker fails on a tree that breaks the rules, and passes the same tree once it keeps them."""
    package = tmp_path / "agentation_mcp"
    for folder in ("", "web", "agent", "store", "cli"):
        (package / folder).mkdir(exist_ok=True)
        (package / folder / "__init__.py").write_text("")
    (package / "models.py").write_text("import json\n")
    (package / "store" / "reads.py").write_text("import apsw\n\nfrom ..models import json\n")
    (package / "agent" / "tools.py").write_text("import mcp\n")
    (package / "web" / "new_route.py").write_text(
        "from ..store import reads\n\n\ndef f() -> None:\n    from ..agent import tools\n"
    )
    (package / "cli" / "probe.py").write_text("import apsw\nfrom agentation_mcp.web.new_route import f\n")

    assert _broken_rules(package) == [
        "cli/probe.py:1: cli imports apsw",
        "cli/probe.py:2: cli imports agentation_mcp.web.new_route",
        "web/new_route.py:5: web imports agentation_mcp.agent.tools",
    ]
    (package / "web" / "new_route.py").write_text("from ..store import reads\n")
    (package / "cli" / "probe.py").write_text("from ..store import reads\n")
    assert _broken_rules(package) == []  # a new module in a part needs no entry anywhere


def test_nothing_imports_service_or_cli() -> None:
    for module, file in _files():
        part = _part(module)
        for name, node, _ in _imports(module, file):
            if _part(name) in ("service", "cli"):
                assert part in ("cli", "__main__", _part(name)), f"{file}:{node.lineno}"


def test_stdio_serves_before_the_http_side_and_the_sdk_load(tmp_path: Path) -> None:
    probe = "import sys, agentation_mcp.service; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=server_env(tmp_path), capture_output=True, text=True, timeout=30, check=True
    )
    loaded = set(done.stdout.split())
    assert {m for m in loaded if m.startswith("agentation_mcp.web") or m == "httptools"} == set()
    assert {m for m in loaded if m.split(".")[0] in (*SDK, "httpx2", "anyio")} == set()


def test_the_sdks_stdio_session_is_loaded_only_by_the_one_lazy_import() -> None:
    owner, function, target = LAZY_SDK
    seen = []
    for module, file in _files():
        for name, node, at_top in _imports(module, file):
            if name == target:
                assert module == owner, f"{file}:{node.lineno} imports {name}"
                assert not at_top
                assert _function_of(file, node) == function
                seen.append(name)
    assert seen == [target]


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
        "agentation_mcp.web.wire",
    }
    assert not modules & heavy

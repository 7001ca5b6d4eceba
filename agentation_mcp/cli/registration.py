"""How to start this installation from any shell: the absolute path of its entry point."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def server_command() -> list[str]:
    """The argv that starts `agentation-mcp server` from this installation, whatever the shell's PATH."""
    beside = Path(sys.executable).parent / "agentation-mcp"
    if beside.is_file():
        return [str(beside.absolute()), "server"]
    found = shutil.which("agentation-mcp")
    if found:
        return [str(Path(found).absolute()), "server"]
    return [str(Path(sys.executable).absolute()), "-m", "agentation_mcp", "server"]


def register_command(scope: str | None = None) -> str:
    """The `claude mcp add` command line that registers this installation."""
    scope_option = f" --scope {scope}" if scope else ""
    return f"claude mcp add{scope_option} agentation -- {shlex.join(server_command())}"

"""Where each agent client keeps its MCP servers (Codex's config.toml, Cursor's and VS Code's mcp.json), and our entry.

`edit` returns the file's new text with our entry set (or removed), everything
else kept; it checks the result by parsing it again and comparing it with what
was meant, so a file it cannot edit safely is refused, never damaged.
"""

from __future__ import annotations

import copy
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import jsonc, toml_tables

NAME = "agentation"
# agentation_watch_annotations waits up to 300 s for a first annotation, then collects for up to 60 s more.
WATCH_LONGEST_CALL = 300 + 60
CODEX_TOOL_TIMEOUT = 420  # s; Codex cuts a tool call at tool_timeout_sec (60 s when it is not set)
CODEX_STARTUP_TIMEOUT = 30  # s; Codex's own default is 10, short for a first start on a busy machine
CLIENTS = ("claude", "codex", "cursor", "vscode")


class ConfigFileError(Exception):
    """A configuration file that cannot be read or edited; the message names the file (and the line)."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    client: str  # the client's name, for messages
    path: Path
    format: Literal["toml", "jsonc"]
    keys: tuple[str, str]  # where our entry is: (servers key, our name)
    new_mode: int  # the mode of a file created here

    def read(self) -> str | None:
        """The file's text, or None when there is no file."""
        try:
            with open(self.path, encoding="utf-8", newline="") as file:
                return file.read()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise ConfigFileError(f"{self.path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise ConfigFileError(f"{self.path} cannot be read: {exc.strerror}") from None

    def entry(self, text: str) -> Any:
        """Our entry in `text`, or None."""
        servers = self._load(text).get(self.keys[0])
        return servers.get(self.keys[1]) if isinstance(servers, dict) else None

    def edit(self, text: str, command: list[str] | None) -> str:
        """`text` with our entry set to run `command`, or removed when `command` is None."""
        if "\r\n" in text and text.count("\r\n") == text.count("\n"):  # a Windows file stays one
            return self._edit(text.replace("\r\n", "\n"), command).replace("\n", "\r\n")
        return self._edit(text, command)

    def _edit(self, text: str, command: list[str] | None) -> str:
        document = self._load(text)
        current = self.entry(text)
        expected = copy.deepcopy(document)
        if command is None:
            edited = self._remove(text)
            servers = expected.get(self.keys[0])
            if isinstance(servers, dict):
                servers.pop(self.keys[1], None)
        else:
            wanted = self._wanted(command, current)
            edited = self._set(text, wanted, current)
            entry = current if _is_stdio(current) and isinstance(current, dict) else {}
            expected.setdefault(self.keys[0], {})[self.keys[1]] = {**entry, **wanted}
        if _without_empty(self._load(edited), self.keys[0]) != _without_empty(expected, self.keys[0]):
            raise ConfigFileError(
                f"{self.path} is laid out in a way init does not edit safely; add the entry by hand "
                "(agentation-mcp init --print shows it)"
            )
        return edited

    def _wanted(self, command: list[str], current: Any) -> dict[str, Any]:
        wanted: dict[str, Any] = {"command": command[0], "args": command[1:]}
        if self.client in ("VS Code", "Claude Code"):  # they name the transport; Cursor needs only the command
            wanted = {"type": "stdio", **wanted}
        if self.format == "toml":
            old = current if isinstance(current, dict) else {}
            timeouts = (("startup_timeout_sec", CODEX_STARTUP_TIMEOUT), ("tool_timeout_sec", CODEX_TOOL_TIMEOUT))
            for key, least in timeouts:
                kept = old.get(key)
                longer = isinstance(kept, int | float) and not isinstance(kept, bool) and kept >= least
                wanted[key] = kept if longer else least
        return wanted

    def _set(self, text: str, wanted: dict[str, Any], current: Any) -> str:
        if current is not None and not _is_stdio(current):
            text = self._remove(text)  # an HTTP entry, or not an entry at all: replaced whole
            current = None
        try:
            if self.format == "toml":
                return toml_tables.set_keys(text, self.keys, wanted)
            if current is None:
                return jsonc.set_member(text, self.keys, wanted)
            for key, value in wanted.items():
                if current.get(key) != value:
                    text = jsonc.set_member(text, (*self.keys, key), value)
            return text
        except (toml_tables.TomlError, jsonc.JsoncError) as exc:
            raise self._error(exc) from None

    def _remove(self, text: str) -> str:
        try:
            if self.format == "toml":
                return toml_tables.remove_table(text, self.keys)
            return jsonc.remove_member(text, self.keys)
        except (toml_tables.TomlError, jsonc.JsoncError) as exc:
            raise self._error(exc) from None

    def _load(self, text: str) -> dict[str, Any]:
        try:
            loaded = toml_tables.loads(text) if self.format == "toml" else jsonc.loads(text)
        except (toml_tables.TomlError, jsonc.JsoncError) as exc:
            raise self._error(exc) from None
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise ConfigFileError(f"{self.path}: the top level is not an object")
        servers = loaded.get(self.keys[0])
        if servers is not None and not isinstance(servers, dict):
            raise ConfigFileError(f"{self.path}: {self.keys[0]} is not a table of servers")
        return loaded

    def _error(self, exc: toml_tables.TomlError | jsonc.JsoncError) -> ConfigFileError:
        where = f":{exc.line}:{exc.column}" if exc.line is not None else ""
        return ConfigFileError(f"{self.path}{where}: {exc.problem}")


def config_file(client: str, scope: str | None, project: Path, home: Path) -> ConfigFile:
    """The file `init --client CLIENT --scope SCOPE` writes; ValueError for a scope the client has not."""
    scopes = {"codex": ("user",), "cursor": ("project", "user"), "vscode": ("project",), "claude": ("project",)}
    allowed = scopes[client]
    scope = scope or allowed[0]
    if scope not in allowed:
        raise ValueError(f"--scope {scope} does not apply to --client {client} (it has: {', '.join(allowed)})")
    json_mode = 0o666 & ~_umask()
    if client == "codex":
        return ConfigFile("Codex", codex_config_path(home), "toml", ("mcp_servers", NAME), 0o600)
    if client == "cursor":
        folder = project if scope == "project" else home
        return ConfigFile("Cursor", folder / ".cursor" / "mcp.json", "jsonc", ("mcpServers", NAME), json_mode)
    if client == "vscode":
        return ConfigFile("VS Code", project / ".vscode" / "mcp.json", "jsonc", ("servers", NAME), json_mode)
    return ConfigFile("Claude Code", project / ".mcp.json", "jsonc", ("mcpServers", NAME), json_mode)


def codex_config_path(home: Path) -> Path:
    """Codex's config.toml: in $CODEX_HOME when it is set, else in ~/.codex."""
    codex_home = os.environ.get("CODEX_HOME")
    return (Path(codex_home) if codex_home else home / ".codex") / "config.toml"


def write_atomically(path: Path, text: str, new_mode: int) -> None:
    """Replace the file (the target of a symlink) with `text` in one rename, keeping its mode."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = new_mode
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _is_stdio(entry: Any) -> bool:
    return isinstance(entry, dict) and "url" not in entry and entry.get("type", "stdio") == "stdio"


def _without_empty(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not (k == key and v == {})}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

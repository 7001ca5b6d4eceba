"""Change one `[table]` of a TOML file in place (Codex's `[mcp_servers.NAME]`), keeping every other line as it was.

`tomllib` judges the file; a small scanner finds where its statements are (it
knows strings, multi-line strings, arrays, inline tables and comments, so a
`[` inside a value is never taken for a header). Only the table's own lines
change: other tables, keys, comments and blank lines are left byte for byte.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

TomlValue = str | int | float | bool | list[str]

_BARE_KEY = r"[A-Za-z0-9_-]+"
_KEY = rf'(?:{_BARE_KEY}|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED_KEY = re.compile(rf"\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*")
_KEY_PART = re.compile(_KEY)
_LOCATION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$|\s*\(at end of document\)$")


class TomlError(ValueError):
    """The text is not TOML, or the table is written in a form this module does not edit."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + problem)
        self.problem, self.line, self.column = problem, line, column


@dataclass(frozen=True, slots=True)
class Statement:
    header: bool  # a [table] or [[array]] header, else a key = value
    keys: tuple[str, ...]
    start: int
    end: int  # one past the newline that ends it (or the end of the text)


def loads(text: str) -> dict[str, Any]:
    """The document, or TomlError with the line and column tomllib names."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _LOCATION.search(message)
        problem = message[: found.start()] if found else message
        if found and found.group(1):
            raise TomlError(problem, int(found.group(1)), int(found.group(2))) from None
        raise TomlError(problem, text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1) from None


def set_keys(text: str, table: tuple[str, ...], values: dict[str, TomlValue]) -> str:
    """`text` with `table`'s keys in `values` set (added where missing), its other keys and sub-tables kept."""
    document = loads(text)
    current = _lookup(document, table)
    if current is not None and not isinstance(current, dict):
        raise TomlError(f"{_dotted(table)} is not a table")
    statements = scan(text)
    header = _header(statements, table)
    if header is None:  # appended; after its sub-tables' headers, if any, is fine too
        if not text.strip():
            text, separator = "", ""
        elif text.endswith("\n\n"):
            separator = ""
        else:
            separator = "\n" if text.endswith("\n") else "\n\n"
        lines = "".join(f"{key} = {render(value)}\n" for key, value in values.items())
        appended = f"{text}{separator}[{_dotted(table)}]\n{lines}"
        if current is not None and not _defines(appended, table, {**current, **values}):
            raise _unusual_form(table)
        return appended
    assert isinstance(current, dict)  # a [table] header defines one
    own = _own_statements(statements, header)
    edits: list[tuple[int, int, str]] = []
    insert_at = own[-1].end if own else header.end
    missing: list[str] = []
    for key, value in values.items():
        line = f"{key} = {render(value)}\n"
        found = next((s for s in own if s.keys == (key,)), None)
        if key in current and current[key] == value and type(current[key]) is type(value):
            continue
        if found is not None:
            ending = "" if text[found.end - 1 : found.end] != "\n" else "\n"
            edits.append((found.start, found.end, line[:-1] + ending))
        elif any(s.keys[0] == key for s in own):
            raise TomlError(f"{_dotted((*table, key))} is written as dotted keys, which init does not edit")
        else:
            missing.append(line)
    if missing:
        newline = "\n" if insert_at == len(text) and not text.endswith("\n") else ""
        edits.append((insert_at, insert_at, newline + "".join(missing)))
    return _splice(text, edits)


def remove_table(text: str, table: tuple[str, ...]) -> str:
    """`text` without `table` and its sub-tables; unchanged when it has none."""
    document = loads(text)
    if _lookup(document, table) is None:
        return text
    statements = scan(text)
    edits = []
    for statement in statements:
        if statement.header and statement.keys[: len(table)] == table:
            own = _own_statements(statements, statement)
            end = own[-1].end if own else statement.end
            while end < len(text) and text[end] in " \t\r\n":
                end += 1
            if end < len(text):  # stop at the start of the line after the blank ones
                end = text.rfind("\n", 0, end) + 1
            edits.append((statement.start, end, ""))
    edited = _splice(text, edits)
    if not _defines(edited, table, None):
        raise _unusual_form(table)
    if edited.endswith("\n\n") and not text.endswith("\n\n"):
        edited = edited.rstrip("\n") + "\n"
    return edited if edited.strip() else ""


def render(value: TomlValue) -> str:
    """A TOML literal for `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _basic_string(value)
    return "[" + ", ".join(_basic_string(item) for item in value) + "]"


def _basic_string(value: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _defines(text: str, table: tuple[str, ...], value: Any) -> bool:
    """Whether `text` is TOML whose `table` is `value` (None: has no such table)."""
    try:
        return bool(_lookup(loads(text), table) == value)
    except TomlError:
        return False


def _unusual_form(table: tuple[str, ...]) -> TomlError:
    return TomlError(f"[{_dotted(table)}] is written in a form init does not edit (not under a [table] header)")


def _lookup(document: dict[str, Any], table: tuple[str, ...]) -> Any:
    node: Any = document
    for key in table:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _header(statements: list[Statement], table: tuple[str, ...]) -> Statement | None:
    return next((s for s in statements if s.header and s.keys == table), None)


def _own_statements(statements: list[Statement], header: Statement) -> list[Statement]:
    """The key = value statements under `header`, up to the next header."""
    after = statements[statements.index(header) + 1 :]
    own = []
    for statement in after:
        if statement.header:
            break
        own.append(statement)
    return own


def _dotted(keys: tuple[str, ...]) -> str:
    return ".".join(key if re.fullmatch(_BARE_KEY, key) else _basic_string(key) for key in keys)


def _splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply edits that do not overlap; two at one place land in the order given."""
    ordered = sorted(enumerate(edits), key=lambda item: (item[1][0], item[1][1], item[0]), reverse=True)
    for _, (start, end, new) in ordered:
        text = text[:start] + new + text[end:]
    return text


def _keys(source: str) -> tuple[str, ...]:
    keys = []
    for part in _KEY_PART.findall(source):
        if part.startswith('"'):
            keys.append(tomllib.loads(f"k = {part}")["k"])
        elif part.startswith("'"):
            keys.append(part[1:-1])
        else:
            keys.append(part)
    return tuple(keys)


def scan(text: str) -> list[Statement]:
    """Every header and key = value statement of a valid TOML text, in order."""
    statements: list[Statement] = []
    n, i, depth = len(text), 0, 0
    line_start = True
    current: tuple[bool, tuple[str, ...], int] | None = None  # the statement being read

    def finish(end: int) -> None:
        nonlocal current
        if current is not None:
            statements.append(Statement(current[0], current[1], current[2], end))
            current = None

    while i < n:
        char = text[i]
        if char == "\n":
            if depth == 0:
                finish(i + 1)
            line_start = True
            i += 1
        elif char in " \t\r":
            i += 1
        elif char == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif line_start and depth == 0:
            line_start = False
            if char == "[":
                array = text.startswith("[[", i)
                inner = i + (2 if array else 1)
                key = _DOTTED_KEY.match(text, inner)
                assert key is not None
                current = (True, _keys(key.group(1)), i)
                i = key.end() + (2 if array else 1)
            else:
                key = _DOTTED_KEY.match(text, i)
                assert key is not None
                current = (False, _keys(key.group(1)), i)
                i = key.end() + 1  # past the =
        else:
            line_start = False
            i = _past_token(text, i)
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
    finish(n)
    return statements


def _past_token(text: str, i: int) -> int:
    """The offset just past the string that starts at `i`, or past the one character there."""
    for quote in ('"""', "'''"):
        if text.startswith(quote, i):
            j = i + 3
            while True:
                j = text.find(quote, j)
                if quote == "'''" or not _escaped(text, j):
                    break
                j += 1
            while text.startswith(quote[0], j + 3):  # up to two quotes of the content come first
                j += 1
            return j + 3
    if text[i] == '"':
        j = i + 1
        while text[j] != '"' or _escaped(text, j):
            j += 1
        return j + 1
    if text[i] == "'":
        return text.index("'", i + 1) + 1
    return i + 1


def _escaped(text: str, j: int) -> bool:
    backslashes = 0
    while j - 1 - backslashes >= 0 and text[j - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1

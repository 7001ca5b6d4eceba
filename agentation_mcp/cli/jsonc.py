"""JSON with comments (JSONC), as VS Code and Cursor read an `mcp.json`: parse it, and change one member in place.

`//` and `/* */` comments and trailing commas are allowed. An edit splices the
text: every character outside the member it sets or removes (other entries,
comments, layout) stays as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 200
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}


class JsoncError(ValueError):
    """The text is not JSONC, or not the shape asked for; `line` and `column` count from 1."""

    def __init__(self, problem: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {problem}")
        self.problem, self.line, self.column = problem, line, column


@dataclass(frozen=True, slots=True)
class Member:
    key: str
    key_start: int
    value: Node
    comma: int | None  # where the comma after the value is, if there is one


@dataclass(frozen=True, slots=True)
class Node:
    start: int
    end: int  # one past the value's last character
    value: Any
    members: tuple[Member, ...] = ()  # an object's, in order

    def member(self, key: str) -> Member | None:
        return next((m for m in self.members if m.key == key), None)


def parse(text: str) -> Node | None:
    """The document's top-level value, or None for a text of only blanks and comments."""
    return _Parser(text).document()


def loads(text: str) -> Any:
    """The value of a JSONC text (None for an empty one)."""
    root = parse(text)
    return None if root is None else root.value


def set_member(text: str, keys: Sequence[str], value: Any) -> str:
    """`text` with the member at `keys` (objects created on the way) set to `value`."""
    root = _root_object(text)
    if root is None:
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        return text + ("\n" if text.strip() and not text.endswith("\n") else "") + _render(nested, "", "  ") + "\n"
    unit = _indent_unit(text, root)
    node = root
    for depth, key in enumerate(keys):
        member = node.member(key)
        if member is None:
            rest: Any = value
            for later in reversed(keys[depth + 1 :]):
                rest = {later: rest}
            return _insert(text, node, key, rest, unit)
        if depth == len(keys) - 1:
            indent = _line_indent(text, member.key_start)
            return _splice(text, [(member.value.start, member.value.end, _render(value, indent, unit))])
        if not isinstance(member.value.value, dict):
            raise _error_at(text, member.value.start, f'"{key}" is not an object')
        node = member.value
    raise ValueError("no keys given")


def remove_member(text: str, keys: Sequence[str]) -> str:
    """`text` without the member at `keys`; unchanged when there is none."""
    node = _root_object(text)
    for key in keys[:-1]:
        member = node.member(key) if node is not None else None
        if member is None or not isinstance(member.value.value, dict):
            return text
        node = member.value
    if node is None:
        return text
    index = next((i for i, m in enumerate(node.members) if m.key == keys[-1]), None)
    if index is None:
        return text
    member = node.members[index]
    start = member.key_start
    end = member.value.end if member.comma is None else member.comma + 1
    line_start = text.rfind("\n", 0, start) + 1
    if not text[line_start:start].strip():
        after = end
        while after < len(text) and text[after] in " \t\r":
            after += 1
        if after == len(text) or text[after] == "\n":
            start, end = line_start, min(after + 1, len(text))
    edits = [(start, end, "")]
    if member.comma is None and index > 0:
        before = node.members[index - 1].comma
        if before is not None:
            edits.append((before, before + 1, ""))
    return _splice(text, edits)


def _root_object(text: str) -> Node | None:
    root = parse(text)
    if root is not None and not isinstance(root.value, dict):
        raise _error_at(text, root.start, "the top level is not an object")
    return root


def _insert(text: str, node: Node, key: str, value: Any, unit: str) -> str:
    close = node.end - 1
    if node.members and _on_own_line(text, node.members[0].key_start):
        indent = _line_indent(text, node.members[0].key_start)
    else:
        indent = _line_indent(text, node.start) + unit
    member_text = f"{json.dumps(key, ensure_ascii=False)}: {_render(value, indent, unit)}"
    edits: list[tuple[int, int, str]] = []
    if node.members and node.members[-1].comma is None:
        end = node.members[-1].value.end
        edits.append((end, end, ","))
    elif node.members:
        member_text += ","  # the file ends its members with a comma; so does ours
    line_start = text.rfind("\n", 0, close) + 1
    if line_start > node.start and not text[line_start:close].strip():
        edits.append((line_start, line_start, f"{indent}{member_text}\n"))
    else:
        edits.append((close, close, f"\n{indent}{member_text}\n{_line_indent(text, close)}"))
    return _splice(text, edits)


def _render(value: Any, indent: str, unit: str) -> str:
    return json.dumps(value, indent=unit, ensure_ascii=False).replace("\n", "\n" + indent)


def _indent_unit(text: str, root: Node) -> str:
    if root.members and _on_own_line(text, root.members[0].key_start):
        inner, outer = _line_indent(text, root.members[0].key_start), _line_indent(text, root.start)
        if inner.startswith(outer) and len(inner) > len(outer):
            return inner[len(outer) :]
    return "  "


def _on_own_line(text: str, offset: int) -> bool:
    return not text[text.rfind("\n", 0, offset) + 1 : offset].strip()


def _line_indent(text: str, offset: int) -> str:
    line_start = text.rfind("\n", 0, offset) + 1
    line = text[line_start:offset]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply edits that do not overlap; two at one place land in the order given."""
    ordered = sorted(enumerate(edits), key=lambda item: (item[1][0], item[1][1], item[0]), reverse=True)
    for _, (start, end, new) in ordered:
        text = text[:start] + new + text[end:]
    return text


def _error_at(text: str, offset: int, problem: str) -> JsoncError:
    line = text.count("\n", 0, offset) + 1
    return JsoncError(problem, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 1 if text.startswith("\ufeff") else 0

    def document(self) -> Node | None:
        self._skip()
        if self.pos == len(self.text):
            return None
        root = self._value(0)
        self._skip()
        if self.pos != len(self.text):
            raise self._error("unexpected text after the end of the document")
        return root

    def _error(self, problem: str) -> JsoncError:
        return _error_at(self.text, self.pos, problem)

    def _skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            char = text[self.pos]
            if char in " \t\r\n":
                self.pos += 1
            elif text.startswith("//", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = n if newline < 0 else newline + 1
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise self._error("a /* comment is never closed")
                self.pos = close + 2
            else:
                return

    def _value(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self._error("values are nested too deeply")
        self._skip()
        if self.pos == len(self.text):
            raise self._error("a value is missing at the end of the document")
        char = self.text[self.pos]
        if char == "{":
            return self._object(depth)
        if char == "[":
            return self._array(depth)
        if char == '"':
            return self._string()
        start = self.pos
        for word, literal in _LITERALS.items():
            if self.text.startswith(word, start):
                self.pos += len(word)
                return Node(start, self.pos, literal)
        number = _NUMBER.match(self.text, start)
        if number is None:
            raise self._error(f"unexpected {self.text[start]!r}: a value was expected")
        self.pos = number.end()
        return Node(start, self.pos, json.loads(number.group()))

    def _string(self) -> Node:
        found = _STRING.match(self.text, self.pos)
        if found is None:
            raise self._error("a string is not closed, or holds a raw control character or a bad escape")
        start, self.pos = self.pos, found.end()
        return Node(start, self.pos, json.loads(found.group()))

    def _object(self, depth: int) -> Node:
        start = self.pos
        self.pos += 1
        members: list[Member] = []
        while True:
            self._skip()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                value = {m.key: m.value.value for m in members}
                return Node(start, self.pos, value, tuple(members))
            if members and members[-1].comma is None:
                raise self._error("a comma or } was expected")
            if not self.text.startswith('"', self.pos):
                raise self._error("a member name in double quotes was expected")
            key_node = self._string()
            if any(m.key == key_node.value for m in members):
                self.pos = key_node.start
                raise self._error(f'the name "{key_node.value}" appears twice in one object')
            self._skip()
            if not self.text.startswith(":", self.pos):
                raise self._error("a colon was expected after the member name")
            self.pos += 1
            member_value = self._value(depth + 1)
            self._skip()
            comma = None
            if self.text.startswith(",", self.pos):
                comma = self.pos
                self.pos += 1
            members.append(Member(key_node.value, key_node.start, member_value, comma))

    def _array(self, depth: int) -> Node:
        start = self.pos
        self.pos += 1
        items: list[Any] = []
        expect_comma = False
        while True:
            self._skip()
            if self.text.startswith("]", self.pos):
                self.pos += 1
                return Node(start, self.pos, items)
            if expect_comma:
                raise self._error("a comma or ] was expected")
            items.append(self._value(depth + 1).value)
            self._skip()
            expect_comma = not self.text.startswith(",", self.pos)
            if not expect_comma:
                self.pos += 1

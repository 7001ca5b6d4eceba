"""The in-place editors behind `init --client`: JSONC (VS Code, Cursor) and TOML tables (Codex).

Generated documents, laid out at random with comments everywhere, are edited and parsed again (the stdlib's
`json` and `tomllib` as the judges where they apply): the edit does exactly what was asked, every comment
survives, a second edit changes nothing, and removing our entry gives back what was there.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentation_mcp.agent.progress import wait_bounds
from agentation_mcp.cli import agent_configs, jsonc, toml_tables
from agentation_mcp.cli.agent_configs import WATCH_LONGEST_CALL

ENTRY: dict[str, Any] = {
    "type": "stdio",
    "command": "/opt/app/bin/agentation-mcp",
    "args": ["server", "--port", "4800"],
}
CODEX: dict[str, Any] = {
    "command": "/opt/app/bin/agentation-mcp",
    "args": ["server"],
    "startup_timeout_sec": 30,
    "tool_timeout_sec": 420,
}
TABLE = ("mcp_servers", "agentation")

# ---------------------------------------------------------------- JSONC


class Layout:
    """Draws blanks and numbered comments to put between JSON tokens."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw, self.comments = draw, 0

    def gap(self) -> str:
        parts = []
        for _ in range(self.draw(st.integers(0, 2))):
            self.comments += 1
            kind = self.draw(st.sampled_from(["space", "newline", "line", "block"]))
            parts.append(
                {
                    "space": " ",
                    "newline": "\n  ",
                    "line": f" // c{self.comments}\n",
                    "block": f"/* c{self.comments} */",
                }[kind]
            )
        return "".join(parts)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=8),
)


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)


values = st.recursive(scalars, containers, max_leaves=8)


def render_jsonc(draw: st.DrawFn, layout: Layout, value: Any) -> str:
    if isinstance(value, dict):
        items = [
            f"{layout.gap()}{json.dumps(k)}{layout.gap()}:{layout.gap()}{render_jsonc(draw, layout, v)}"
            for k, v in value.items()
        ]
        comma: bool = draw(st.booleans())
        trailing = "," if items and comma else ""
        return "{" + ",".join(items) + trailing + layout.gap() + "}"
    if isinstance(value, list):
        items = [layout.gap() + render_jsonc(draw, layout, v) for v in value]
        comma = draw(st.booleans())
        trailing = "," if items and comma else ""
        return "[" + ",".join(items) + trailing + layout.gap() + "]"
    return json.dumps(value)


@st.composite
def jsonc_documents(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    document = draw(st.dictionaries(st.text(max_size=6), values, max_size=3))
    if draw(st.booleans()):
        servers = draw(st.dictionaries(st.sampled_from(["other", "agentation", "x y"]), values, max_size=2))
        document["servers"] = servers
    layout = Layout(draw)
    return layout.gap() + render_jsonc(draw, layout, document) + layout.gap(), document


NUMBERED = re.compile(r"(?://|/\*) c\d+")


def comments(text: str, *, outside: str = "") -> list[str]:
    """The numbered comments in `text`; less those in servers.agentation's "value" (what a set replaces) or whole
    "member" (what a removal takes)."""
    found = NUMBERED.findall(text)
    root = jsonc.parse(text)
    servers = root.member("servers") if root is not None else None
    ours = servers.value.member("agentation") if servers is not None else None
    if outside and ours is not None:
        start = ours.value.start if outside == "value" else ours.key_start
        for inside in NUMBERED.findall(text[start : ours.value.end]):
            found.remove(inside)
    return found


@settings(max_examples=300, deadline=None)
@given(jsonc_documents())
def test_jsonc_parses_as_json_does_and_edits_keep_everything_else(case: tuple[str, dict[str, Any]]) -> None:
    text, document = case
    assert jsonc.loads(text) == document
    if not comments(text) and not re.search(r",\s*[}\]]", text):
        assert json.loads(text) == document
    if "servers" in document and not isinstance(document["servers"], dict):
        with pytest.raises(jsonc.JsoncError):
            jsonc.set_member(text, ["servers", "agentation"], ENTRY)
        return
    edited = jsonc.set_member(text, ["servers", "agentation"], ENTRY)
    expected = json.loads(json.dumps(document))
    expected.setdefault("servers", {})["agentation"] = ENTRY
    assert jsonc.loads(edited) == expected
    assert sorted(comments(edited)) == sorted(comments(text, outside="value"))
    assert jsonc.set_member(edited, ["servers", "agentation"], ENTRY) == edited
    removed = jsonc.remove_member(edited, ["servers", "agentation"])
    del expected["servers"]["agentation"]
    assert jsonc.loads(removed) == expected
    assert sorted(comments(removed)) == sorted(comments(text, outside="member"))
    if "agentation" not in document.get("servers", {}):
        assert jsonc.remove_member(text, ["servers", "agentation"]) == text


VSCODE_FILE = """\
// Servers for this workspace
{
\t"inputs": [
\t\t{ "type": "promptString", "id": "token", "password": true }, // asked once
\t],
\t"servers": {
\t\t/* the docs server */
\t\t"docs": {
\t\t\t"type": "http",
\t\t\t"url": "https://example.invalid/mcp"
\t\t}
\t}
}
"""


def test_jsonc_adds_in_the_files_own_indentation_and_removes_back_to_the_same_bytes() -> None:
    edited = jsonc.set_member(VSCODE_FILE, ["servers", "agentation"], ENTRY)
    assert '\t\t},\n\t\t"agentation": {\n\t\t\t"type": "stdio",\n' in edited
    assert "// asked once" in edited
    assert "/* the docs server */" in edited
    assert jsonc.remove_member(edited, ["servers", "agentation"]) == VSCODE_FILE


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ('{"servers": {"a": 1 "b": 2}}', 1, 21, "a comma or } was expected"),
        ('{\n  "servers": {\n    "a": tru\n  }\n}', 3, 10, "unexpected 't'"),
        ('{"a": 1} /* open', 1, 10, "a /* comment is never closed"),
        ('{"a": 1, "a": 2}', 1, 10, 'the name "a" appears twice'),
        ("[1, 2]", 1, 1, "the top level is not an object"),
        ('{"a": "tab\there"}', 1, 7, "a string is not closed"),
        ('{"a": 1}}', 1, 9, "unexpected text after the end"),
    ],
)
def test_jsonc_errors_name_the_line_and_column(text: str, line: int, column: int, problem: str) -> None:
    with pytest.raises(jsonc.JsoncError) as caught:
        jsonc.set_member(text, ["servers", "agentation"], ENTRY)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert problem in caught.value.problem


# ---------------------------------------------------------------- TOML


bare_keys = st.from_regex(r"[a-z][a-z0-9_-]{0,5}", fullmatch=True)
toml_strings = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
toml_scalars = st.one_of(st.booleans(), st.integers(-1000, 1000), toml_strings)


@st.composite
def toml_values(draw: st.DrawFn) -> tuple[str, Any]:
    """(TOML text, its value): scalars, arrays over several lines, inline tables, header-like multi-line strings."""
    kind = draw(st.sampled_from(["scalar", "array", "nested", "inline", "multiline"]))
    if kind == "scalar":
        value = draw(toml_scalars)
        return (toml_tables.render(value) if not isinstance(value, bool) else str(value).lower()), value
    if kind == "array":
        items = draw(st.lists(toml_strings, max_size=3))
        return "[\n" + "".join(f"  {toml_tables.render(i)}, # [not.a.header]\n" for i in items) + "]", items
    if kind == "nested":
        return '[\n  ["x"],\n  [1, 2],\n]', [["x"], [1, 2]]
    if kind == "inline":
        return '{ command = "y", args = ["[z]"] }', {"command": "y", "args": ["[z]"]}
    return '"""\n[mcp_servers.agentation]\ncommand = "no"\n"""', '[mcp_servers.agentation]\ncommand = "no"\n'


@st.composite
def toml_documents(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    names = draw(st.lists(bare_keys.filter(lambda k: k != "agentation"), max_size=3, unique=True))
    tables: list[tuple[tuple[str, ...], dict[str, tuple[str, Any]]]] = [((), {})]
    tables += [(("mcp_servers", name), {}) for name in names]
    if draw(st.booleans()):
        tables.append((("profiles", "p"), {}))
    if draw(st.booleans()):
        tables.insert(draw(st.integers(1, len(tables))), (TABLE, {}))
    for _, keys in tables:
        for key in draw(st.lists(bare_keys | st.sampled_from(list(CODEX)), max_size=3, unique=True)):
            keys[key] = draw(toml_values())
    lines: list[str] = []
    document: dict[str, Any] = {}
    comment = 0
    for header, keys in tables:
        for _ in range(draw(st.integers(0, 2))):
            comment += 1
            lines.append(draw(st.sampled_from(["", f"# c{comment}"])) or "")
        if header:
            lines.append(f"[{'.'.join(header)}]" + draw(st.sampled_from(["", "  # header"])))
        node = document
        for part in header:
            node = node.setdefault(part, {})
        for key, (source, value) in keys.items():
            comment += 1
            lines.append(f"{key} = {source}" + draw(st.sampled_from(["", f"  # c{comment}"])))
            node[key] = value
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))
    assert tomllib.loads(text) == document
    return text, document


def commented_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "# c" in line]


def replaced_lines(text: str, values: dict[str, Any]) -> list[str]:
    """The lines of our table's statements that set a key in `values` (they are rewritten)."""
    lines: list[str] = []
    table: tuple[str, ...] = ()
    for statement in toml_tables.scan(text):
        if statement.header:
            table = statement.keys
        elif table == TABLE and statement.keys[0] in values:
            lines += text[statement.start : statement.end].splitlines()
    return lines


@settings(max_examples=300, deadline=None)
@given(toml_documents(), st.sampled_from([CODEX, {"command": "/x", "args": []}]))
def test_toml_table_edits_keep_every_other_line(case: tuple[str, dict[str, Any]], values: dict[str, Any]) -> None:
    text, document = case
    edited = toml_tables.set_keys(text, TABLE, values)
    expected = json.loads(json.dumps(document))
    servers = expected.setdefault("mcp_servers", {})
    servers["agentation"] = {**servers.get("agentation", {}), **values}
    assert tomllib.loads(edited) == expected
    assert set(commented_lines(text)) - set(replaced_lines(text, values)) <= set(commented_lines(edited))
    assert toml_tables.set_keys(edited, TABLE, values) == edited
    removed = toml_tables.remove_table(edited, TABLE)
    del servers["agentation"]
    if not servers:
        del expected["mcp_servers"]
    assert tomllib.loads(removed) == expected
    if "agentation" not in document.get("mcp_servers", {}):
        assert tomllib.loads(removed) == document
        assert commented_lines(removed) == commented_lines(text)


CODEX_FILE = """\
# Codex settings
model = "gpt-5"  # the default model

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"]  # pinned later

[mcp_servers.docs.env]
TOKEN = "t"

# profiles below
[profiles.fast]
model = "gpt-5-mini"
"""


def test_toml_appends_our_table_and_removing_it_gives_back_the_same_bytes() -> None:
    edited = toml_tables.set_keys(CODEX_FILE, TABLE, CODEX)
    assert edited.startswith(CODEX_FILE)
    assert edited[len(CODEX_FILE) :] == (
        "\n[mcp_servers.agentation]\n"
        'command = "/opt/app/bin/agentation-mcp"\n'
        'args = ["server"]\n'
        "startup_timeout_sec = 30\n"
        "tool_timeout_sec = 420\n"
    )
    assert toml_tables.remove_table(edited, TABLE) == CODEX_FILE


def test_toml_changes_only_our_keys_in_place_and_keeps_the_rest_of_our_table() -> None:
    ours = (
        "[mcp_servers.agentation]  # ours\n"
        'command = "agentation-mcp"\n'
        "args = [\n"
        '  "server",\n'
        "]\n"
        'env = { AGENTATION_ACCESS_KEY = "k" }\n'
        "tool_timeout_sec = 600  # longer on purpose\n"
        "\n"
        "[mcp_servers.agentation.env_http]\n"
        'X = "1"\n'
    )
    edited = toml_tables.set_keys(CODEX_FILE + "\n" + ours, TABLE, {**CODEX, "tool_timeout_sec": 600})
    assert edited.startswith(CODEX_FILE)
    assert "[mcp_servers.agentation]  # ours\n" in edited
    assert "tool_timeout_sec = 600  # longer on purpose\n" in edited
    assert tomllib.loads(edited)["mcp_servers"]["agentation"] == {
        **CODEX,
        "tool_timeout_sec": 600,
        "env": {"AGENTATION_ACCESS_KEY": "k"},
        "env_http": {"X": "1"},
    }
    assert toml_tables.remove_table(edited, TABLE) == CODEX_FILE


@pytest.mark.parametrize(
    "text",
    [
        'mcp_servers = { agentation = { command = "x" } }\n',
        '[mcp_servers]\nagentation.command = "x"\n',
        '[mcp_servers.agentation]\ncommand.x = "y"\n',
        'mcp_servers.agentation = "not a table"\n',
    ],
)
def test_toml_forms_it_does_not_edit_are_refused(text: str) -> None:
    with pytest.raises(toml_tables.TomlError, match=r"written in a form init does not edit|not a table|dotted keys"):
        toml_tables.set_keys(text, TABLE, CODEX)
    if text.startswith("[mcp_servers.agentation]"):  # our own header: it can go whole
        assert toml_tables.remove_table(text, TABLE) == ""
    else:
        with pytest.raises(toml_tables.TomlError, match="written in a form init does not edit"):
            toml_tables.remove_table(text, TABLE)


def test_toml_a_table_known_only_by_its_sub_table_gets_its_header_and_loses_both_on_remove() -> None:
    text = '[mcp_servers.agentation.env]\nAGENTATION_ACCESS_KEY = "k"\n'
    edited = toml_tables.set_keys(text, TABLE, CODEX)
    assert edited.startswith(text)
    assert tomllib.loads(edited)["mcp_servers"]["agentation"] == {**CODEX, "env": {"AGENTATION_ACCESS_KEY": "k"}}
    assert toml_tables.remove_table(edited, TABLE) == ""


def test_toml_errors_name_the_line_and_column() -> None:
    with pytest.raises(toml_tables.TomlError) as caught:
        toml_tables.set_keys('model = "a"\n[mcp_servers.docs\n', TABLE, CODEX)
    assert (caught.value.line, caught.value.column) == (2, 18)
    with pytest.raises(toml_tables.TomlError) as caught:
        toml_tables.set_keys('a = """\nopen', TABLE, CODEX)
    assert caught.value.line == 2


def test_strings_are_rendered_as_toml_reads_them() -> None:
    tricky = 'quote " back \\ tab \t nl \n del \x7f bell \x07 é 😀'
    assert tomllib.loads("k = " + toml_tables.render(tricky))["k"] == tricky
    assert tomllib.loads("k = " + toml_tables.render([tricky, ""]))["k"] == [tricky, ""]


def test_the_longest_watch_call_is_what_the_watch_tool_allows() -> None:
    bounds = wait_bounds("agentation_watch_annotations", {"timeoutSeconds": 10**6, "batchWindowSeconds": 10**6})
    assert bounds == (300, WATCH_LONGEST_CALL)


@pytest.mark.parametrize("client", ["codex", "vscode"])
def test_a_file_with_windows_line_endings_keeps_them(client: str, tmp_path: Path) -> None:
    config = agent_configs.config_file(client, None, tmp_path, tmp_path)
    text = CODEX_FILE if client == "codex" else VSCODE_FILE
    crlf = text.replace("\n", "\r\n")
    edited = config.edit(crlf, ["/opt/app/bin/agentation-mcp", "server"])
    assert edited.count("\r\n") == edited.count("\n") > crlf.count("\n")
    assert config.edit(edited, None) == crlf

"""The committed benchmark results name servers and versions, never a path of the machine they ran on."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scripts.bench.report import _by_name

RESULTS = Path(__file__).parent.parent / "docs" / "bench-results.json"
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:home|root|tmp|work|usr|opt|var|Users|private|mnt|srv)/|site-packages|\.venv")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def test_the_committed_results_hold_no_path_of_a_machine() -> None:
    found = [text for text in _strings(json.loads(RESULTS.read_text(encoding="utf-8"))) if MACHINE_PATH.search(text)]
    assert found == []


def test_a_command_line_is_recorded_with_its_files_by_name() -> None:
    argv = [
        "/usr/bin/node",
        "/home/me/.cache/agentation-mcp/reference/node_modules/agentation-mcp/dist/cli.js",
        "server",
    ]
    assert _by_name(argv) == "node cli.js server"
    assert not MACHINE_PATH.search(_by_name(["/opt/tools/.venv/bin/agentation-mcp", "server"]))

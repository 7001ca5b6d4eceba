"""The committed benchmark results name servers and versions, never a path of the machine they ran on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """What the bench's report writes for a target's command (scripts/ is run from the repository root)."""
    cli = "/home/me/.cache/agentation-mcp/reference/node_modules/agentation-mcp/dist/cli.js"
    probe = (
        "import sys; from scripts.bench.report import _by_name; "
        f"print(_by_name(['/usr/bin/node', {cli!r}, 'server'])); "
        "print(_by_name(['/opt/tools/.venv/bin/agentation-mcp', 'server']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=RESULTS.parent.parent, capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.splitlines() == ["node cli.js server", "agentation-mcp server"]

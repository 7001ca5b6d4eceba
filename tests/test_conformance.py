"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, installed pinned by
scripts/install-conformance) against our `/mcp`.

The scenarios run are those that apply to this server: the protocol itself (handshake, logging,
ping, tools listing, SSE streams, DNS-rebinding protection) and the features it offers (completion,
resources, subscriptions, prompts, tool errors). The others call the suite's own fixture tools,
prompts and resources (`test_image_content` and the like), which a real server does not have.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ServerProcess

# The six the suite runs on the protocol itself (the npm server passes five: it has no logging).
PROTOCOL = (
    "server-initialize",
    "logging-set-level",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
)
FEATURES = (
    "completion-complete",
    "resources-list",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "tools-call-error",
)


def _conformance() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(os.environ.get("AGENTATION_CONFORMANCE_DIR") or cache / "agentation-mcp" / "conformance")
    found = folder / "node_modules" / ".bin" / "conformance"
    if not found.exists() or shutil.which("node") is None:
        reason = f"the conformance suite is not installed at {found}: run scripts/install-conformance"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("conformance") / "home", "--http-only").wait_listening()
    yield proc
    proc.proc.terminate()  # --http-only does not read stdin: a signal stops it
    assert proc.stop() == 0


@pytest.mark.parametrize("scenario", PROTOCOL + FEATURES)
def test_the_conformance_scenario_passes_on_mcp(served: ServerProcess, scenario: str) -> None:
    suite = _conformance()
    run = subprocess.run(
        [str(suite), "server", "--url", f"{served.url}/mcp", "--scenario", scenario],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert ", 0 failed" in run.stdout

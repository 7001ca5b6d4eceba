"""The install scripts the README's test command runs: outside CI a missing piece is skipped, in CI it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _without_node(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has the basic tools but no node, npm or apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id", "env", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="the case checked here is chromium present, node absent"
)
def test_a_missing_node_is_skipped_outside_ci_and_fails_in_ci(tmp_path: Path) -> None:
    env = _without_node(tmp_path)
    script = str(ROOT / "scripts" / "install-browser-deps")
    outside = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert outside.returncode == 0, outside.stderr
    assert "node and npm are needed" in outside.stderr
    assert "skipped, so the browser tests will skip" in outside.stderr
    in_ci = subprocess.run(
        ["bash", script], env={**env, "CI": "true"}, capture_output=True, text=True, timeout=60, check=False
    )
    assert in_ci.returncode == 1
    assert "skipped" not in in_ci.stderr
    assert os.access(script, os.X_OK)


@pytest.mark.parametrize(("script", "tests"), [("install-codex", "Codex"), ("install-claude-code", "Claude Code")])
def test_the_agent_clis_without_node_are_skipped_outside_ci_and_fail_in_ci(
    tmp_path: Path, script: str, tests: str
) -> None:
    env = _without_node(tmp_path)
    path = str(ROOT / "scripts" / script)
    outside = subprocess.run(["bash", path], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert outside.returncode == 0, outside.stderr
    assert f"skipped, so the {tests} tests will skip" in outside.stderr
    in_ci = subprocess.run(
        ["bash", path], env={**env, "CI": "true"}, capture_output=True, text=True, timeout=60, check=False
    )
    assert in_ci.returncode == 1
    assert "node and npm are needed" in in_ci.stderr
    assert os.access(path, os.X_OK)

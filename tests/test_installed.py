"""What a user installs: the version has one source, and the wheel holds exactly the package's files.

The wheel is the one `scripts/smoke-installed` built (`AGENTATION_WHEEL`), or one built here from an
sdist of this tree, as `python -m build` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

import agentation_mcp
from agentation_mcp.cli import main

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agentation_mcp"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_installed_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    out, err = capsys.readouterr()
    assert out == f"agentation-mcp {metadata.version('agentation-mcp')}\n"
    assert err == ""


def test_the_version_has_one_source() -> None:
    # The metadata's version is read from __version__ at build time (pyproject's dynamic version).
    assert metadata.version("agentation-mcp") == agentation_mcp.__version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "agentation_mcp.__version__"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if named := os.environ.get("AGENTATION_WHEEL"):
        yield Path(named)
        return
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    log = (done.stdout + done.stderr).lower()
    assert "warning" not in log, done.stdout + done.stderr
    assert "deprecat" not in log, done.stdout + done.stderr
    (built,) = out.glob("*.whl")
    yield built


def source_files() -> set[str]:
    """Every file of the package in the tree (modules and package data), as paths in a wheel."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_wheel_holds_every_file_of_the_package_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        fields = archive.read(info).decode("utf-8")
    packaged = {name for name in names if ".dist-info/" not in name}
    assert packaged == source_files()
    assert {n.split("/", 1)[1] for n in names if ".dist-info/" in n} >= {"METADATA", "RECORD", "entry_points.txt"}
    assert f"\nVersion: {agentation_mcp.__version__}\n" in fields
    assert "\nLicense-Expression: MIT\n" in fields
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

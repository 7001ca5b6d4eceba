"""docs/architecture.md names only modules that exist, and the README points to it."""

from __future__ import annotations

import re
from pathlib import Path

import agentation_mcp

PACKAGE = Path(agentation_mcp.__file__).parent
ROOT = PACKAGE.parent
DOC = ROOT / "docs" / "architecture.md"

# `store/writer.py`, `service.py`, `tests/test_layering.py`, or `agentation_mcp.store.writer`.
FILE = re.compile(r"\b((?:[a-z_]+/)*[a-z_]+\.py)\b")
DOTTED = re.compile(r"\bagentation_mcp(?:\.[a-z_]+)+")


def _named_files(text: str) -> set[str]:
    return set(FILE.findall(text))


def _exists(name: str) -> bool:
    if name.startswith(("tests/", "scripts/")):
        return (ROOT / name).is_file()
    return (PACKAGE / name).is_file()


def test_every_module_the_architecture_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    files = _named_files(text)
    assert len(files) > 30  # the finder finds them: the page names most of the package
    assert sorted(name for name in files if not _exists(name)) == []
    for dotted in DOTTED.findall(text):
        path = PACKAGE.parent / dotted.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), dotted


def test_the_check_fails_on_a_module_that_does_not_exist() -> None:
    names = _named_files("`store/writer.py` and `store/scribe.py`, then `tests/test_layering.py`")
    assert names == {"store/writer.py", "store/scribe.py", "tests/test_layering.py"}
    assert [name for name in sorted(names) if not _exists(name)] == ["store/scribe.py"]


def test_every_subpackage_is_described() -> None:
    text = DOC.read_text(encoding="utf-8")
    for package in sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        assert f"`{package}/`" in text, package


def test_the_readme_points_to_it() -> None:
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")

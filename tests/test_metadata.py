"""The project's metadata (pyproject.toml) claims only what is true: every runtime dependency
is imported by ``django_suprsend`` itself, and PyPI gets links to the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the metadata is the same on 3.10

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# A distribution's name on PyPI -> the module it is imported as, where they differ.
IMPORT_NAMES = {"django": "django", "django-environ": "environ"}


def imported_modules() -> set[str]:
    """The top-level modules that any file of the package imports."""
    found: set[str] = set()
    for path in (REPO / "django_suprsend").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    modules = imported_modules()
    names = [re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0] for spec in PROJECT["dependencies"]]
    unused = [name for name in names if IMPORT_NAMES.get(name, name) not in modules]
    assert not unused, f"runtime dependencies that django_suprsend never imports: {unused}"


def test_project_urls_point_at_the_repository() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Source", "Issues", "Documentation", "Changelog"} <= set(urls)
    assert all(url.startswith("https://github.com/django-suprsend/") for url in urls.values())

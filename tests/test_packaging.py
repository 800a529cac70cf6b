"""The distribution: ``python -m build`` gives an sdist and a wheel that hold what a project
needs (migrations, templates), ``twine check`` accepts them, and the wheel installed into a
new virtual environment runs the example project's ``check`` and ``migrate``.

Run alone with ``pytest -m packaging`` (it builds and installs, about a minute).
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.distribution import REPO, new_venv, only, run
from tests.local import SUITE_SETTINGS, environment_without

pytestmark = pytest.mark.packaging

PACKAGE = REPO / "django_suprsend"
# Files a project cannot work without, whatever else changes.
REQUIRED = [
    "django_suprsend/__init__.py",
    "django_suprsend/py.typed",
    "django_suprsend/migrations/0001_initial.py",
    "django_suprsend/management/commands/suprsend_backfill.py",
    "django_suprsend/templates/admin/django_suprsend/syncstate/change_list.html",
    "django_suprsend/testing/__main__.py",
]


def package_files() -> set[str]:
    """Every file of the package in the source tree, as the distribution should name it."""
    return {
        path.relative_to(REPO).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_wheel_holds_the_whole_package_and_nothing_else(dist: Path) -> None:
    names = set(zipfile.ZipFile(only(dist, "*.whl")).namelist())
    package = {name for name in names if name.startswith("django_suprsend/")}
    assert set(REQUIRED) <= package
    assert package == package_files()
    strays = {name.split("/")[0] for name in names} - {"django_suprsend"}
    assert all(name.endswith(".dist-info") for name in strays), strays


def test_sdist_holds_the_package_docs_and_tests(dist: Path) -> None:
    sdist = only(dist, "*.tar.gz")
    root = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{root}/") for name in archive.getnames()}
    assert package_files() <= names
    assert {"README.rst", "CHANGELOG.rst", "LICENSE", "pyproject.toml", "tox.ini"} <= names
    assert "example_project/accounts/migrations/0001_initial.py" in names
    assert "tests/test_packaging.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".sqlite3")]


def test_twine_check_passes(dist: Path) -> None:
    result = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())])
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_installed_wheel_runs_the_example_project(dist: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    python = new_venv(env_dir) / "python"
    # The example project reads its settings with django-environ: the [example] extra.
    run([str(python), "-m", "pip", "install", "--quiet", f"{only(dist, '*.whl')}[example]"])
    # The example project, alone in a folder: django_suprsend must come from the wheel.
    project = tmp_path / "project"
    shutil.copytree(
        REPO / "example_project",
        project / "example_project",
        ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", ".env"),
    )
    env = environment_without(*SUITE_SETTINGS, "PYTHON")
    env["DEMO_DIR"] = str(tmp_path / "demo")
    where = run([str(python), "-c", "import django_suprsend; print(django_suprsend.__file__)"],
                cwd=project, env=env)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(env_dir)

    manage = [str(python), "example_project/manage.py"]
    check = run([*manage, "check", "--fail-level", "WARNING"], cwd=project, env=env)
    assert "no issues" in check.stdout
    run([*manage, "migrate", "--no-input"], cwd=project, env=env)
    applied = run([*manage, "showmigrations", "django_suprsend", "accounts"], cwd=project, env=env)
    assert "[ ]" not in applied.stdout
    assert applied.stdout.count("[X]") >= 3, applied.stdout

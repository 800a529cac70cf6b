"""The project's metadata (pyproject.toml) claims only what is true: every runtime dependency
is imported by ``django_suprsend`` itself, the extras a project installs are those the README
names and bring what they are for, the Django classifiers are the versions tox tests, and PyPI
gets links to the repository and images it can show."""

from __future__ import annotations

import ast
import configparser
import re
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the metadata is the same on 3.10

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# A distribution's name on PyPI -> the module it is imported as, where they differ.
IMPORT_NAMES = {"django": "django", "django-environ": "environ"}
EXTRAS = PROJECT["optional-dependencies"]
#: The extras for projects (the others are for this repository: tests, demo, benchmarks).
USER_EXTRAS = {"redis", "progress"}


def requirement(spec: str) -> tuple[str, set[str]]:
    """The distribution a requirement names, and the extras it asks of it."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", spec)
    assert match, spec
    return match[1].lower(), {extra.strip() for extra in (match[2] or "").split(",") if extra}


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
    names = [requirement(spec)[0] for spec in PROJECT["dependencies"]]
    unused = [name for name in names if IMPORT_NAMES.get(name, name) not in modules]
    assert not unused, f"runtime dependencies that django_suprsend never imports: {unused}"


def test_project_urls_point_at_the_repository() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Source", "Issues", "Documentation", "Changelog"} <= set(urls)
    assert all(url.startswith("https://github.com/django-suprsend/") for url in urls.values())


def test_the_redis_extra_brings_kombus_redis_transport() -> None:
    assert [requirement(spec) for spec in EXTRAS["redis"]] == [("celery", {"redis"})]


def test_the_progress_extra_is_the_bar_the_backfill_imports() -> None:
    assert [requirement(spec)[0] for spec in EXTRAS["progress"]] == ["tqdm"]
    assert "tqdm" in imported_modules()


def test_rabbitmq_needs_no_extra() -> None:
    """kombu's AMQP transport is py-amqp, which kombu (a Celery dependency) always installs."""
    assert "rabbitmq" not in EXTRAS
    assert "kombu" in {requirement(spec)[0] for spec in metadata.requires("celery") or []}
    always = [spec for spec in metadata.requires("kombu") or [] if "extra ==" not in spec]
    assert "amqp" in {requirement(spec)[0] for spec in always}


def test_the_readme_installs_the_extras_for_projects() -> None:
    readme = (REPO / "README.rst").read_text(encoding="utf-8")
    named = {
        extra.strip()
        for extras in re.findall(r"pip install \"?django-suprsend\[([^\]]+)\]", readme)
        for extra in extras.split(",")
    }
    assert named.issubset(EXTRAS), f"the README names extras that do not exist: {named}"
    assert USER_EXTRAS.issubset(named), f"the README never installs {USER_EXTRAS - named}"


def tox_django_versions() -> set[str]:
    """The Django versions of tox's matrix: each ``djangoNN`` factor of ``env_list``, as the
    ``X.Y`` that its ``deps`` line pins (``djangoNN: Django>=X.Y,<...``)."""
    tox = configparser.ConfigParser()
    tox.read(REPO / "tox.ini", encoding="utf-8")
    pins = dict(re.findall(r"^\s*(django\d+):\s*Django>=(\d+\.\d+),", tox["testenv"]["deps"], re.M))
    factors = set()
    for group in re.findall(r"django(\{[\d,]+\}|\d+)", tox["tox"]["env_list"]):
        factors |= {f"django{number}" for number in group.strip("{}").split(",")}
    assert factors <= set(pins), f"tox factors without a Django pin in deps: {factors - set(pins)}"
    for factor, version in pins.items():
        assert factor == "django" + version.replace(".", ""), (factor, version)
    return {pins[factor] for factor in factors}


def test_the_django_classifiers_are_the_versions_tox_tests() -> None:
    prefix = "Framework :: Django :: "
    claimed = {c.removeprefix(prefix) for c in PROJECT["classifiers"] if c.startswith(prefix)}
    assert claimed == tox_django_versions()


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def test_the_readme_images_render_on_pypi_from_the_repository() -> None:
    """PyPI renders the long description with readme_renderer, away from the repository: a
    relative ``docs/x.png`` is a broken image there (``twine check`` does not say so)."""
    readme_renderer = pytest.importorskip("readme_renderer.rst")  # the [package] extra
    html = readme_renderer.render((REPO / "README.rst").read_text(encoding="utf-8"))
    assert html is not None, "README.rst does not render as PyPI renders it"
    images = _Images()
    images.feed(html)
    assert images.sources, "no image found in the rendered README"
    raw = PROJECT["urls"]["Source"].replace("github.com", "raw.githubusercontent.com")
    for src in images.sources:
        assert src.startswith(f"{raw}/main/"), f"image not served from the repository: {src}"
        assert (REPO / src.removeprefix(f"{raw}/main/")).is_file(), f"no such file: {src}"

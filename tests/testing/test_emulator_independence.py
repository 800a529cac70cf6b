"""The emulator shares no code with the client: its imports, and its own signature checks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from django_suprsend import testing
from django_suprsend.testing import auth
from tests import vectors

PACKAGE = Path(testing.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_emulator_imports_nothing_of_the_client(path):
    ours = {name for name in imported_modules(path) if name.split(".")[0] == "django_suprsend"}
    assert {name for name in ours if not name.startswith("django_suprsend.testing")} == set()
    assert "django_suprsend" not in ours  # not even the root package's __version__


def test_the_page_does_not_import_the_hub():
    for name in ("page", "page_html", "page_view"):
        assert "django_suprsend.testing.hub" not in imported_modules(PACKAGE / f"{name}.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_each_module_keeps_to_one_job_in_about_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 420


@pytest.mark.parametrize("case", vectors.cases("signatures"))
def test_the_emulator_computes_the_captured_signatures(case):
    inputs, expected = case["inputs"], case["expected"]
    if "secret" not in inputs:
        pytest.skip("a Bearer case: nothing is signed")
    body = inputs["body_text"].encode("utf-8") if inputs["body_text"] else b""
    assert auth.body_md5(inputs["method"], body) == expected["content_md5"]
    signed = auth.string_to_sign(
        inputs["method"], body, inputs["content_type"], inputs["date"], inputs["request_uri"]
    )
    assert signed == expected["string_to_sign"]
    signature = auth.expected_signature(inputs["secret"], signed)
    assert f"{inputs['workspace_key']}:{signature}" == expected["authorization_header"]

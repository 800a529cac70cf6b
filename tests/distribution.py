"""The built distribution and a virtual environment to install it into, for the tests that
use the package as a project would (``tests/test_packaging.py``, ``tests/test_quickstart.py``).

The sdist and the wheel are built once per session (the ``dist`` fixture of
``tests/conftest.py``), whichever of those tests run.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end; fail with its output unless it exits with 0."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # noqa: S603
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


def build(out: Path) -> Path:
    """The sdist and the wheel of this repository, built into ``out``."""
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)])
    return out


def only(folder: Path, pattern: str) -> Path:
    """The one file of ``folder`` matching ``pattern``."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, found {found}"
    return found[0]


def new_venv(env_dir: Path) -> Path:
    """A new virtual environment with pip (pip's own cache is reused); its ``bin`` folder."""
    venv.create(env_dir, with_pip=True)
    return env_dir / "bin"

"""Set up Django for a benchmark on throw-away test databases."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup(emulator_url: str = "http://127.0.0.1:9/") -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ["SUPRSEND_BASE_URL"] = emulator_url
    import django
    from celery import Celery

    django.setup()
    app = Celery("bench")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.set_current()


@contextmanager
def temporary_database(alias: str) -> Iterator[str]:
    """Create ``test_<name>`` on ``alias`` with every table; drop it afterwards."""
    from django.db import connections

    connection = connections[alias]
    old_name = connection.settings_dict["NAME"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield f"{connection.vendor} ({name})"
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


@contextmanager
def bench_database(emulator_url: str, *aliases: str) -> Iterator[str]:
    """Django set up against the emulator, with test databases on ``aliases`` (default only)."""
    setup(emulator_url)
    with ExitStack() as stack:
        names = [
            stack.enter_context(temporary_database(alias)) for alias in aliases or ("default",)
        ]
        yield ", ".join(names)

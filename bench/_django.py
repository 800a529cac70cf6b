"""Set up Django for a benchmark on a throw-away test database."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def bench_database(emulator_url: str) -> Iterator[str]:
    """Configure Django, create ``test_<name>`` with every table, drop it afterwards."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ["SUPRSEND_BASE_URL"] = emulator_url
    import django
    from django.db import connection

    django.setup()
    old_name = connection.settings_dict["NAME"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield f"{connection.vendor} ({name})"
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

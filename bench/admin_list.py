"""The SyncState admin list at 1,000 and at 1,000,000 profiles, on PostgreSQL.

The baseline is the same page with 1,000 rows, measured in the same run:
the ratio shows how the page grows with the table (1.0 = not at all).
Rows are generated in the database (``generate_series``) in seconds.

Usage: ``python bench/admin_list.py [--rows 1000000]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import bench_database

PAGES = {
    "list": "/admin/django_suprsend/syncstate/",
    "failed": "/admin/django_suprsend/syncstate/?status__exact=failed",
    "search": "/admin/django_suprsend/syncstate/?q=user-4242",
}


def fill(total: int) -> None:
    """Profiles user-0 .. user-(total-1): one in 50 failed, the rest synced."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_suprsend_syncstate")
        have = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO django_suprsend_syncstate
                (distinct_id, object_id, status, attempts, last_synced_at, last_attempt_at,
                 last_error, last_error_code, updated_at)
            SELECT 'user-' || i, i::text,
                   CASE WHEN i %% 50 = 0 THEN 'failed' ELSE 'synced' END, 0,
                   now() - (i || ' seconds')::interval, now(),
                   CASE WHEN i %% 50 = 0 THEN 'hub answered 400' ELSE '' END,
                   CASE WHEN i %% 50 = 0 THEN 400 END, now() - (i || ' seconds')::interval
            FROM generate_series(%s, %s - 1) AS i
            """,
            [have, total],
        )
        cursor.execute("ANALYZE django_suprsend_syncstate")


def timed_pages(client, repeat: int = 5) -> dict[str, tuple[float, int]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    result = {}
    for name, url in PAGES.items():
        times = []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - start)
            assert response.status_code == 200, response.status_code
        result[name] = (statistics.median(times), len(queries))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with bench_database("http://127.0.0.1:9/") as database:
        from django.contrib.auth.models import User
        from django.test import Client

        print(f"database: {database}")
        admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
        client = Client()
        client.force_login(admin)
        fill(1_000)
        small = timed_pages(client)
        fill(args.rows)
        large = timed_pages(client)
        for name in PAGES:
            (t_small, q_small), (t_large, q_large) = small[name], large[name]
            print(
                f"{name:7s} 1,000 rows {t_small * 1000:7.1f} ms ({q_small} queries)   "
                f"{args.rows:,} rows {t_large * 1000:7.1f} ms ({q_large} queries)   "
                f"ratio {t_large / t_small:5.1f}"
            )


if __name__ == "__main__":
    main()

"""The Celery app of the tests: ``celery -A tests.celery_app worker``.

Configured like a project's (``CELERY_*`` Django settings, tasks found by
autodiscovery); the broker comes from ``CELERY_BROKER_URL`` in the
environment, Redis database 15 by default, so that the test process and the
worker subprocesses of ``tests/workers.py`` meet on the same broker.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from django_suprsend.wire import signing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

#: A worker whose clock is off (``WorkerPool.start(clock_skew=...)``): it signs its requests
#: with a ``Date`` this many seconds from the real time, as a machine without NTP would.
CLOCK_SKEW = float(os.environ.get("TESTS_CLOCK_SKEW") or 0)
if CLOCK_SKEW:
    _http_date = signing.http_date

    def _skewed_http_date(timestamp: float | None = None) -> str:
        return _http_date((time.time() if timestamp is None else timestamp) + CLOCK_SKEW)

    signing.http_date = _skewed_http_date  # read by each SuprsendClient when it is made

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    broker_url=BROKER_URL,
    broker_connection_retry_on_startup=True,
    # One task at a time per worker, so that two workers share the flush tasks.
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    # No remote control: a killed worker would leave its mailbox's binding on the broker.
    worker_enable_remote_control=False,
)
app.autodiscover_tasks()

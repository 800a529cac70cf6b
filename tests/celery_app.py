"""The Celery app of the tests: ``celery -A tests.celery_app worker``.

Configured like a project's (``CELERY_*`` Django settings, tasks found by
autodiscovery); the broker comes from ``CELERY_BROKER_URL`` in the
environment, Redis database 15 by default, so that the test process and the
worker subprocesses of ``tests/workers.py`` meet on the same broker.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

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

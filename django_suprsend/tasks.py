"""Where Celery's ``autodiscover_tasks()`` looks for an app's tasks: the flush and
sweep tasks live in :mod:`django_suprsend.delivery.tasks`."""

from django_suprsend.delivery.tasks import flush_outbox, sweep

__all__ = ["flush_outbox", "sweep"]

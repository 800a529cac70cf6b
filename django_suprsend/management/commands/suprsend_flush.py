"""``manage.py suprsend_flush``: send the outbox now, in this process, without Celery."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS
from django.utils.translation import ngettext

from django_suprsend.delivery.flush import flush


class Command(BaseCommand):
    help = "Send every due SuprSend outbox entry now, in this process (no Celery needed)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")
        parser.add_argument(
            "--batch-size", type=int, default=None, help="Entries claimed per batch."
        )

    def handle(self, *args: Any, database: str, batch_size: int | None, **options: Any) -> None:
        result = flush(using=database, limit=batch_size)
        self.stdout.write(f"SuprSend outbox: {result}")
        if result.failed:
            self.stderr.write(
                ngettext(
                    "%(n)d profile failed; see the SuprSend sync states in the admin.",
                    "%(n)d profiles failed; see the SuprSend sync states in the admin.",
                    result.failed,
                )
                % {"n": result.failed}
            )

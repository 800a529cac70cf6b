"""``manage.py suprsend_backfill [MODEL ...]``: push existing rows' profiles, resumably.

Exit status: 0 every record delivered (or nothing to do), 1 some failed, 2
nothing delivered and something failed (or a ``--jobs`` process failed), 3 a
usage error (unknown model, bad option). A dry run exits 1 when it found
invalid rows.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS
from django.utils.translation import ngettext

from django_suprsend import backfill
from django_suprsend.delivery import outage

FAILED = 2
USAGE_ERROR = 3


class Command(BaseCommand):
    help = (
        "Push the full SuprSend profile of existing rows (default: every model using "
        "SuprsendProfileMixin), in batches, resuming after the last completed batch."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("models", nargs="*", metavar="MODEL", help="app_label.ModelName")
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Rows read and records sent per batch."
        )
        parser.add_argument(
            "--since",
            help="Only rows whose since-field (suprsend_backfill_since_field, or date_joined, "
            "updated_at, modified) is >= this ISO date or datetime.",
        )
        parser.add_argument(
            "--filter",
            action="append",
            default=[],
            dest="filters",
            metavar="FIELD=VALUE",
            help="Passed to .filter(); repeatable. true/false/none are converted.",
        )
        parser.add_argument("--ids", help="Comma-separated primary keys.")
        parser.add_argument(
            "--only-failed", action="store_true", help="Only rows whose SyncState is failed."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Build and validate every record; send and write nothing.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--channels-only", action="store_true", help="Send only channel $append operations."
        )
        mode.add_argument(
            "--properties-only",
            action="store_true",
            help="Send only the $set of properties, language and time zone.",
        )
        parser.add_argument(
            "--via-workers",
            action="store_true",
            help="Queue through the outbox for the Celery workers instead of sending directly.",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            help="Processes that send at once, each its own range of primary keys "
            "(direct sends only; a resumed run keeps the split it started with).",
        )
        parser.add_argument(
            "--restart", action="store_true", help="Ignore the checkpoint; start from the start."
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(self, *args: Any, **opts: Any) -> None:
        options = backfill.Options(
            batch_size=opts["batch_size"],
            since=opts["since"],
            filters=opts["filters"],
            ids=opts["ids"],
            only_failed=opts["only_failed"],
            dry_run=opts["dry_run"],
            channels_only=opts["channels_only"],
            properties_only=opts["properties_only"],
            via_workers=opts["via_workers"],
            restart=opts["restart"],
            database=opts["database"],
            jobs=opts["jobs"],
        )
        started = time.monotonic()
        total = backfill.Stats()
        try:
            models = backfill.resolve_models(list(opts["models"]))
            # Validate every model's selection before sending anything.
            totals = [backfill.count(model, options) for model in models]
            for model, rows in zip(models, totals, strict=True):
                total.add(self._run(model, options, rows))
        except backfill.BackfillError as exc:
            raise CommandError(str(exc), returncode=USAGE_ERROR) from None
        except backfill.BackfillFailed as exc:
            raise CommandError(str(exc), returncode=FAILED) from None
        except KeyboardInterrupt:
            self.stderr.write("Interrupted: run the same command again to resume.")
            raise
        code = self._summary(total, options, time.monotonic() - started)
        if code:
            sys.exit(code)

    def _run(self, model: Any, options: backfill.Options, rows: int) -> backfill.Stats:
        label = model._meta.label
        bar = self._tqdm(rows, label)
        started = time.monotonic()
        done = 0

        def progress(read: int, stats: backfill.Stats) -> None:
            nonlocal done
            done += read
            if bar is not None:
                # The counts of the plain lines, in the bar's postfix; update() redraws it.
                bar.set_postfix(
                    {"sent": stats.sent, "failed": stats.failed, "skipped": stats.skipped},
                    refresh=False,
                )
                bar.update(read)
                return
            elapsed = max(time.monotonic() - started, 1e-9)
            rate = done / elapsed
            eta = (rows - done) / rate if rate and rows > done else 0.0
            self.stdout.write(
                f"{label}: {done}/{rows} rows, {rate:.0f} rows/s, ETA {eta:.0f}s "
                f"(sent {stats.sent}, failed {stats.failed}, skipped {stats.skipped})"
            )

        try:
            stats = backfill.run(model, options, progress=progress)
        finally:
            if bar is not None:
                bar.close()
        if stats.resumed_after:
            self.stdout.write(f"{label}: resumed after pk {stats.resumed_after}.")
        return stats

    def _tqdm(self, total: int, label: str) -> Any:
        if not self.stdout.isatty():
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # optional: pip install "django-suprsend[progress]"
            return None
        return tqdm(total=total, desc=label, unit="rows", file=self.stdout._out)

    def _summary(self, total: backfill.Stats, options: backfill.Options, elapsed: float) -> int:
        rate = (total.sent + total.failed) / elapsed if elapsed > 0 else 0.0
        if options.dry_run:
            self.stdout.write(
                f"Dry run: {_rows(total.rows)}, {total.sent} valid, {total.invalid_count} invalid, "
                f"{total.skipped} skipped; nothing sent."
            )
            for pk, distinct_id, message in total.invalid:
                self.stdout.write(f"  invalid: pk={pk} distinct_id={distinct_id}: {message}")
            return 1 if total.invalid_count else 0
        verb = "queued" if options.via_workers else "sent"
        self.stdout.write(
            f"Backfill: {_rows(total.rows)}, {total.sent} {verb}, {total.failed} failed, "
            f"{total.skipped} skipped in {elapsed:.1f}s ({rate:.0f} records/s)."
        )
        if not total.failed:
            return 0
        failed = ngettext("%(n)d profile failed", "%(n)d profiles failed", total.failed) % {
            "n": total.failed
        }
        if total.refused_credentials:
            answered = ngettext(
                "%(n)d record answered 401/403",
                "%(n)d records answered 401/403",
                total.refused_credentials,
            ) % {"n": total.refused_credentials}
            self.stderr.write(
                f"{failed}: the hub refused the credentials ({answered}), so nothing can be "
                f"sent until they are fixed. {outage.WHAT_TO_CHECK} Then run the same command "
                "again."
            )
            return 1 if total.sent else 2
        self.stderr.write(
            f"{failed}; see the SuprSend sync states in the admin, then rerun with --only-failed."
        )
        return 1 if total.sent else 2


def _rows(count: int) -> str:
    return ngettext("%(n)d row", "%(n)d rows", count) % {"n": count}

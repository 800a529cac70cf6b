"""Backfill: push existing rows' full profiles to the hub, resumably (``suprsend_backfill``).

May import ``profiles``, ``delivery``, ``wire``, ``models`` and ``conf``; nothing imports it
but the command. Its API is below; the modules follow the run: :mod:`.options` (what to
do), :mod:`.selection` (which rows), :mod:`.rows` (rows to records), :mod:`.pipeline`
(send a range, record outcomes, move the checkpoint), :mod:`.jobs` (a run over several
processes), :mod:`.runner` (one run).
"""

from django_suprsend.backfill.options import (
    BackfillError,
    BackfillFailed,
    Done,
    Options,
    Progress,
    Stats,
)
from django_suprsend.backfill.pipeline import checkpoint_key, finish, send_range
from django_suprsend.backfill.runner import run
from django_suprsend.backfill.selection import count, resolve_models, since_field

__all__ = [
    "BackfillError",
    "BackfillFailed",
    "Done",
    "Options",
    "Progress",
    "Stats",
    "checkpoint_key",
    "count",
    "finish",
    "resolve_models",
    "run",
    "send_range",
    "since_field",
]

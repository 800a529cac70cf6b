"""Profiles: from a model to profile edits (the mapping and its problems, the full push,
the snapshot and diff, the mixin, the explicit ``sync``/``queue_operations`` API).

May import ``delivery`` (to enqueue), ``wire``, ``models``, ``conf``, ``signals`` and
``exceptions``; never ``backfill``, ``notifications``, ``admin`` or the commands.
"""

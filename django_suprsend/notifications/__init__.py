"""Notifications from Django: workflow triggers and events queued in the caller's
transaction and sent by the workers after their recipients' profile changes.

May import ``profiles`` (a recipient given as a model instance), ``delivery``, ``wire``,
``models``, ``conf`` and ``exceptions``; only the admin and the public API import it.
"""

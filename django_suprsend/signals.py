"""The app's own signals, sent by the workers after each outcome.

``profile_synced``: ``sender`` is the model class of the profile (or None
when unknown), with ``distinct_id`` and ``sync_state``.
``profile_sync_failed``: the same, plus ``error`` (human-readable),
``code`` (HTTP status or None) and ``retrying`` (True while the change
will be tried again, False once it has failed for good).

``notification_sent``: ``sender`` is :class:`~django_suprsend.models.Notification`,
with ``notification`` (the row, as sent: ``message_id`` set).
``notification_failed``: the same, plus ``error``, ``code`` and ``retrying``.
"""

from django.dispatch import Signal

profile_synced = Signal()
profile_sync_failed = Signal()
notification_sent = Signal()
notification_failed = Signal()

"""Delivery: from the outbox to the hub and back (enqueue, schedule, claim, flush, notify,
the tasks, the sync state, the shared client, the credentials outage, retention).

May import ``wire``, ``models``, ``conf``, ``signals`` and ``exceptions``; never
``profiles`` or anything above it. Entries are kinds of one outbox: a profile edit, a
delete, a workflow trigger, an event.
"""

"""A SuprSend hub emulator for tests: ``HubEmulator`` and the ``suprsend_hub`` pytest fixture.

It holds profiles and the notifications (``Notification``: workflow triggers and
events) it applied, and the order in which they arrived (``Arrival``). No Django
here, and nothing of the package's client: it can serve any client, in any test runner.
"""

from django_suprsend.testing.hub import HubEmulator, RecordedRequest
from django_suprsend.testing.notifications import Arrival, Notification

__all__ = ["Arrival", "HubEmulator", "Notification", "RecordedRequest"]

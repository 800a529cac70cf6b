"""A SuprSend hub emulator for tests: ``HubEmulator`` and the ``suprsend_hub`` pytest fixture.

No Django here, so it can serve any client, in any test runner.
"""

from django_suprsend.testing.hub import HubEmulator, RecordedRequest
from django_suprsend.testing.notifications import Arrival, Notification

__all__ = ["Arrival", "HubEmulator", "Notification", "RecordedRequest"]

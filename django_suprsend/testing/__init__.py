"""A SuprSend hub emulator for tests: ``HubEmulator`` and the ``suprsend_hub`` pytest fixture.

No Django here, so it can serve any client, in any test runner.
"""

from django_suprsend.testing.hub import HubEmulator, RecordedRequest

__all__ = ["HubEmulator", "RecordedRequest"]

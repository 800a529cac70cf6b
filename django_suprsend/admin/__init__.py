"""The admin: the SyncState list and its pages (registered here), and
:class:`SuprsendAdminMixin` for a profile model's own admin.

The top layer with the commands: it may import every other layer. :mod:`.display`
renders, :mod:`.actions` holds the actions, :mod:`.sync_state` the SyncState admin,
:mod:`.profile` the mixin.
"""

from django_suprsend.admin.profile import SuprsendAdminMixin, SuprsendStatusFilter
from django_suprsend.admin.sync_state import SyncStateAdmin

__all__ = ["SuprsendAdminMixin", "SuprsendStatusFilter", "SyncStateAdmin"]

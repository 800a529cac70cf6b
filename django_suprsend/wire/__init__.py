"""The wire: what goes over HTTP to the hub, byte for byte as the official SDK sends it
(records, signing, chunks, retries, each answer's outcome). No Django import.

May import only ``django_suprsend.exceptions`` and itself (and the root package's
``__version__``); usable on its own: ``SuprsendClient`` in :mod:`.client`.
"""

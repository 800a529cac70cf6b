"""Where migrations find the mixin: ``makemigrations`` writes
``django_suprsend.mixins.SuprsendProfileMixin`` into a model's ``bases``, so this
path stays for every migration already written. New code imports it from
``django_suprsend``."""

from django_suprsend.profiles.mixin import SuprsendProfileMixin

__all__ = ["SuprsendProfileMixin"]

"""Two user tables with the same fields: one plain, one synced by the mixin."""

from django.db import models

from django_suprsend import SuprsendProfileMixin


class UserFields(models.Model):
    email = models.EmailField()
    phone = models.CharField(max_length=32)
    first_name = models.CharField(max_length=64)
    last_name = models.CharField(max_length=64)
    language = models.CharField(max_length=8)
    timezone = models.CharField(max_length=64)
    plan = models.CharField(max_length=16)
    is_active = models.BooleanField(default=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class PlainUser(UserFields):
    pass


class SyncedUser(SuprsendProfileMixin, UserFields):
    suprsend_channels = {"$email": "email", "$sms": "phone"}
    suprsend_properties = {"name": "get_full_name", "plan": "plan"}
    suprsend_language_field = "language"
    suprsend_timezone_field = "timezone"

"""Models of the test project: a swapped user model, its devices, a profile model beside
it and a multi-table child."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from django_suprsend import SuprsendProfileMixin


class User(SuprsendProfileMixin, AbstractUser):
    phone = models.CharField(max_length=32, blank=True)
    whatsapp = models.CharField(max_length=32, blank=True)
    language = models.CharField(max_length=8, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    plan = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001 - None: $unset

    suprsend_channels = {
        "$email": "email",
        "$sms": "phone",
        "$whatsapp": "whatsapp",
        "$androidpush": "get_android_tokens",
    }
    suprsend_properties = {"name": "get_full_name", "plan": "plan"}
    suprsend_language_field = "language"
    suprsend_timezone_field = "timezone"

    def get_android_tokens(self) -> list[tuple[str, str | None]]:
        return [(device.token, device.provider or None) for device in self.devices.all()]


class Device(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices"
    )
    token = models.CharField(max_length=255)
    provider = models.CharField(max_length=16, blank=True)

    def __str__(self) -> str:
        return self.token


class Customer(SuprsendProfileMixin, models.Model):
    """A profile model beside the user; its distinct_id comes from a field (check W001)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer"
    )
    external_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    email = models.EmailField(blank=True)
    company = models.CharField(max_length=64, blank=True)

    suprsend_distinct_id = "external_id"
    suprsend_channels = {"$email": "email"}
    suprsend_properties = {"company": "company"}

    def __str__(self) -> str:
        return str(self.external_id)


class Staff(User):
    """A multi-table child of the user model."""

    department = models.CharField(max_length=64, blank=True)

    suprsend_properties = {**User.suprsend_properties, "department": "department"}

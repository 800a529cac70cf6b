"""The example project's users: a custom user model with SuprSend's mixin, and the push
tokens of their devices in a related model."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

import django_suprsend
from django_suprsend import SuprsendProfileMixin
from django_suprsend.wire.operations import ProfileEdit


class User(SuprsendProfileMixin, AbstractUser):
    """Each field named below is kept in step with the user's SuprSend profile."""

    class Plan(models.TextChoices):
        FREE = "free", "Free"
        PRO = "pro", "Pro"
        TEAM = "team", "Team"

    phone = models.CharField(max_length=32, blank=True, help_text="E.164, such as +14155550123")
    whatsapp = models.CharField(max_length=32, blank=True, help_text="E.164")
    language = models.CharField(max_length=8, blank=True, help_text="ISO 639-1, such as 'en'")
    timezone = models.CharField(max_length=64, blank=True, help_text="IANA, such as 'UTC'")
    plan = models.CharField(max_length=8, choices=Plan.choices, default=Plan.FREE)

    # distinct_id: the primary key (the default), which never changes.
    suprsend_channels = {
        "$email": "email",
        "$sms": "phone",
        "$whatsapp": "whatsapp",
        "$androidpush": "android_tokens",
        "$iospush": "ios_tokens",
    }
    suprsend_properties = {"name": "get_full_name", "plan": "plan"}
    suprsend_language_field = "language"
    suprsend_timezone_field = "timezone"
    # What the push-token methods read, fetched per batch by suprsend_backfill.
    suprsend_prefetch_related = ["devices"]

    def android_tokens(self) -> list[tuple[str, str]]:
        return [(device.token, "fcm") for device in self._devices(Device.Platform.ANDROID)]

    def ios_tokens(self) -> list[tuple[str, str]]:
        return [(device.token, "apns") for device in self._devices(Device.Platform.IOS)]

    def _devices(self, platform: str) -> list[Device]:
        # Reads the prefetched devices when there are (the admin and the backfill prefetch).
        return [device for device in self.devices.all() if device.platform == platform]


class Device(models.Model):
    """A phone of a user's, with its push token."""

    class Platform(models.TextChoices):
        ANDROID = "android", "Android (FCM)"
        IOS = "ios", "iOS (APNs)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices"
    )
    platform = models.CharField(max_length=8, choices=Platform.choices)
    token = models.CharField(max_length=255)

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.token[:12]}"


# Tokens live in another model, so a save of the user does not see them change:
# queue the user's full push when a device is saved, and the precise removal when
# one is deleted (a full push adds what is there; it cannot tell what went away).
@receiver(post_save, sender=Device)
def device_saved(
    sender: type[Device], instance: Device, raw: bool = False, **kwargs: object
) -> None:
    if not raw:
        django_suprsend.sync(instance.user)


@receiver(post_delete, sender=Device)
def device_deleted(sender: type[Device], instance: Device, **kwargs: object) -> None:
    try:
        user = instance.user
    except User.DoesNotExist:
        return  # deleted with its user, whose own delete is queued
    edit = ProfileEdit(str(user.pk))
    if instance.platform == Device.Platform.ANDROID:
        edit.remove_androidpush(instance.token, "fcm")
    else:
        edit.remove_iospush(instance.token, "apns")
    django_suprsend.queue_operations(user, edit.operations)

"""The example project's user admin: Django's, with the SuprSend column, filter and actions."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from django_suprsend.admin import SuprsendAdminMixin

from .models import Device, User


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0


@admin.register(User)
class UserAdmin(SuprsendAdminMixin, BaseUserAdmin):
    # What fits 1280 px beside the filters (with SuprSend's column, second); the language and
    # the plan are on each user's page, the plan and is_active among the filters.
    list_display = ("username", "email", "phone")
    list_filter = ("plan", "is_active", "is_staff")
    search_fields = ("username", "first_name", "last_name", "email", "phone")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        ("SuprSend profile", {"fields": ("phone", "whatsapp", "language", "timezone", "plan")}),
    )
    inlines = (DeviceInline,)
    # The push-token sources read user.devices: one query for the page, not one per row.
    suprsend_prefetch_related = ("devices",)

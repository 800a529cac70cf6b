"""The test project's user admin, with SuprSend's column, filter and actions."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from django_suprsend.admin import SuprsendAdminMixin
from tests.testapp.models import User


@admin.register(User)
class UserAdmin(SuprsendAdminMixin, BaseUserAdmin):
    suprsend_prefetch_related = ("devices",)

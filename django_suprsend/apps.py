from django.apps import AppConfig


class SuprsendConfig(AppConfig):
    name = "django_suprsend"
    verbose_name = "SuprSend"
    default_auto_field = "django.db.models.BigAutoField"

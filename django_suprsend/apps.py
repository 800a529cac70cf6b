from django.apps import AppConfig


class SuprsendConfig(AppConfig):
    name = "django_suprsend"
    verbose_name = "SuprSend"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_suprsend import checks  # noqa: F401 - checks registers the system checks
        from django_suprsend.delivery import beat
        from django_suprsend.profiles.tracking import connect_all

        connect_all()
        beat.connect()

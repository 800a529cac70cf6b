"""Settings of the example project.

Everything that differs between the demo and production comes from the
environment (read with django-environ, from ``example_project/.env`` too);
the defaults are the embedded demo: SQLite, a Celery broker that needs no
server (kombu's ``filesystem://``) and the hub emulator on 127.0.0.1:8765.
See ``.env.example`` for production.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the demo keeps its SQLite database and broker messages (git-ignored).
DEMO_DIR = Path(env("DEMO_DIR", default=str(BASE_DIR.parent / ".demo")))

SECRET_KEY = env("DJANGO_SECRET_KEY", default="example-project-not-a-secret")
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_suprsend",
    "example_project.accounts",
]
AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"
STATIC_URL = "static/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DEMO_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The server and the worker write at once: wait for the lock, and take it at BEGIN
    # so that two writers never deadlock upgrading a read lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )

# Celery: filesystem:// needs no server (the demo); production uses Redis or RabbitMQ.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_TASK_IGNORE_RESULT = True
if CELERY_BROKER_URL.startswith("filesystem://"):
    _BROKER_DIR = DEMO_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR),
        "data_folder_out": str(_BROKER_DIR),
        "control_folder": str(DEMO_DIR / "broker-control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
    _BROKER_DIR.mkdir(parents=True, exist_ok=True)
# No CELERY_BEAT_SCHEDULE: django_suprsend adds its sweep (sends what a lost flush task left
# behind, prunes old entries) to beat's schedule when beat starts (SUPRSEND["SWEEP_INTERVAL"]).
CELERY_BEAT_SCHEDULE_FILENAME = str(DEMO_DIR / "celerybeat-schedule")

# The hub emulator by default; real credentials and SUPRSEND_BASE_URL talk to SuprSend.
SUPRSEND = {
    "WORKSPACE_KEY": env("SUPRSEND_WORKSPACE_KEY", default="ws_demo_key"),
    "WORKSPACE_SECRET": env("SUPRSEND_WORKSPACE_SECRET", default="ws_demo_secret"),
    "API_KEY": env("SUPRSEND_API_KEY", default=None),
    "BASE_URL": env("SUPRSEND_BASE_URL", default="http://127.0.0.1:8765/"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_suprsend": {"handlers": ["console"], "level": "INFO"}},
}

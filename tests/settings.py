"""One settings module for the whole suite; DATABASE_URL picks the database."""

import json
import os
import tempfile

import environ

from django_suprsend.conf import DEFAULTS as SUPRSEND_DEFAULTS

env = environ.Env()


def _suprsend_value(key: str, value: str) -> object:
    """A string for the settings whose default is a string or None; JSON for numbers."""
    default = SUPRSEND_DEFAULTS[key]
    return value if default is None or isinstance(default, str) else json.loads(value)


SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",  # the admin's CSS and JS, served by live_server (browser tests)
    "django_suprsend",
    "tests.testapp",
]

AUTH_USER_MODEL = "testapp.User"
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"

SUPRSEND = {
    "WORKSPACE_KEY": "ws_test_key",
    "WORKSPACE_SECRET": "ws_test_secret",
    "BASE_URL": "http://127.0.0.1:9/",  # nothing listens: tests that send use the emulator's URL
}

DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///:memory:")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    try:
        import MySQLdb  # noqa: F401 - mysqlclient, when it could be built
    except ImportError:  # PyMySQL: pure Python, needs no MariaDB headers to install
        import pymysql

        pymysql.install_as_MySQLdb()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, so that the Celery workers of tests/test_workers.py can open the test database.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"django-suprsend-tests-{os.getpid()}.sqlite3")
    }
else:
    # A test database of this run's own: two runs on one server (a developer's and CI's)
    # never drop or fill each other's.
    DATABASES["default"]["TEST"] = {"NAME": f"test_suprsend_{os.getpid()}"}

# SUPRSEND_<KEY> environment variables override SUPRSEND[<KEY>]: tests/workers.py configures
# its Celery workers so.
SUPRSEND.update(
    (key, _suprsend_value(key, value))
    for name, value in os.environ.items()
    if name.startswith("SUPRSEND_") and (key := name.removeprefix("SUPRSEND_")) in SUPRSEND_DEFAULTS
)

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

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

"""Settings for the benchmarks: PostgreSQL (DATABASE_URL) as default, and SQLite."""

import os
import tempfile

import environ

env = environ.Env()

SECRET_KEY = "bench-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_suprsend",
    "bench.benchapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "bench.urls"
ALLOWED_HOSTS = ["testserver"]
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
DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/test"),
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), "suprsend-bench.sqlite3"),
        "TEST": {"NAME": os.path.join(tempfile.gettempdir(), "suprsend-bench-test.sqlite3")},
    },
}
SUPRSEND = {
    "WORKSPACE_KEY": "ws_bench_key",
    "WORKSPACE_SECRET": "ws_bench_secret",
    "BASE_URL": os.environ.get("SUPRSEND_BASE_URL", "http://127.0.0.1:9/"),
}
# Flush tasks go to an in-process broker: a benchmark of saves measures no broker.
CELERY_BROKER_URL = "memory://"

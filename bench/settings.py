"""Settings for the benchmarks: the database from DATABASE_URL (PostgreSQL by default)."""

import os

import environ

env = environ.Env()

SECRET_KEY = "bench-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_suprsend",
    "bench.benchapp",
]
DATABASES = {"default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/test")}
SUPRSEND = {
    "WORKSPACE_KEY": "ws_bench_key",
    "WORKSPACE_SECRET": "ws_bench_secret",
    "BASE_URL": os.environ.get("SUPRSEND_BASE_URL", "http://127.0.0.1:9/"),
    "AUTOSYNC": True,
}
CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = False

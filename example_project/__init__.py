# Load the Celery app with Django, so that @shared_task uses it (named celery_app.py:
# manage.py runs with this folder on sys.path, where celery.py would shadow Celery).
from .celery_app import app as celery_app

__all__ = ["celery_app"]

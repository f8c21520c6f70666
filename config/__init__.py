import sys

from config.worker_metrics import worker_metrics_prepare

# Before anything imports prometheus-client (config.worker_metrics says why).
worker_metrics_prepare(sys.argv)

from config.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]

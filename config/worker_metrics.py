"""A Celery worker's metric files, set up before anything imports prometheus-client.

A prefork worker runs its tasks in pool processes, and its ``/metrics`` (served
by the main process, ``emporium.observability.task_metrics``) must add up what
each of them counted. prometheus-client does that through files in
``PROMETHEUS_MULTIPROC_DIR``, and chooses between those files and in-process
values once, when it is first imported; the app servers get the directory from
their launcher (``emporium.core.servers``) before they start. A worker is
started by Celery's own command, so the package ``config`` (the first thing
``celery -A config`` imports) calls :func:`worker_metrics_prepare` before
anything else: a worker gets an empty directory of its own unless the
environment names one, which is emptied instead.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def celery_worker_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` starts a Celery worker (``celery … worker`` or ``python -m celery …``)."""
    if not argv:
        return False
    program = Path(argv[0])
    is_celery = program.name == "celery" or (
        program.name == "__main__.py" and program.parent.name == "celery"
    )
    return is_celery and "worker" in argv[1:]


def _remove_if_owner(directory: Path, owner_pid: int) -> None:
    # Pool processes inherit this handler; only the worker that made the directory removes it.
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


def worker_metrics_prepare(argv: Sequence[str]) -> Path | None:
    """Gives a starting Celery worker its empty metric directory; None for any other process."""
    if not celery_worker_command(argv):
        return None
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus-client was imported before the worker's metric directory")
    pid = os.getpid()
    owned = MULTIPROCESS_VARIABLE not in os.environ
    if owned:
        # The launcher's naming, so its sweep of directories left by dead processes finds it.
        os.environ[MULTIPROCESS_VARIABLE] = str(
            Path(tempfile.gettempdir()) / f"emporium-metrics-{pid}"
        )
    from emporium.observability.metrics import multiprocess_directory_prepare

    directory = multiprocess_directory_prepare(server_pid=pid)
    if owned:
        atexit.register(_remove_if_owner, directory, pid)
    return directory

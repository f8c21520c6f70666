"""The work queues have one definition, config.celery's TASK_QUEUES.

Every launcher of a Celery worker (``make worker``, the image's ``worker`` role
that compose and Kubernetes run, ``make cluster``) starts it without ``-Q``, so
it consumes every queue of that configuration (test_entrypoint.py starts one and
asks it); none of them lists the queues again.
"""

from __future__ import annotations

import re
import shlex
import subprocess

from config.celery import TASK_QUEUES
from tests.support.deploy import ROOT

LAUNCHERS = [
    ROOT / "Makefile",
    ROOT / "deploy" / "docker" / "entrypoint.sh",
    ROOT / "deploy" / "cluster" / "cluster.py",
    *sorted((ROOT / "deploy" / "compose").glob("*.y*ml")),
    *sorted((ROOT / "deploy" / "compose").glob("*.env")),
    *sorted((ROOT / "deploy" / "k8s").glob("*.y*ml")),
]


def test_make_worker_starts_a_worker_on_the_configured_queues() -> None:
    # -o install: the recipe alone, without bringing the virtualenv up to date.
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "install", "worker"],  # noqa: S607 - make from PATH, as a developer runs it
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    commands = [shlex.split(line) for line in done.stdout.splitlines() if "celery" in line]
    assert len(commands) == 1, done.stdout
    argv = commands[0]
    assert argv[argv.index("-A") :][:3] == ["-A", "config", "worker"]
    assert not {"-Q", "--queues"} & set(argv)


def test_no_launcher_lists_the_work_queues_again() -> None:
    names = "|".join(re.escape(queue.name) for queue in TASK_QUEUES)
    # Two or more queue names joined by commas: a copy of the list, or of part of it.
    listed = re.compile(rf"\b(?:{names})(?:\s*,\s*(?:{names}))+\b")
    assert len(LAUNCHERS) > 5
    copies = {
        str(path.relative_to(ROOT)): listed.findall(path.read_text())
        for path in LAUNCHERS
        if listed.search(path.read_text())
    }
    assert copies == {}

"""A real Celery worker (prefork, two pool processes) serves its tasks' outcomes on /metrics.

The tasks run in the pool processes; the main process serves the sum of what
they counted (multiprocess files), which is what these tests read over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection

from emporium.observability.tests import metric_tasks
from emporium.observability.tests.metric_samples import scraped
from tests.support.processes import ROOT, WorkerProcess, free_port, stop_process, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def queue(database_url: str, broker_url: str) -> Iterator[str]:
    """A queue of this test's own: no other worker on the shared broker takes its tasks.

    The workers that consume it run on the test's PostgreSQL database.
    """
    name = f"emporium.test.metrics.{uuid.uuid4().hex[:12]}"
    yield name
    with Connection(broker_url, connect_timeout=5) as broker:
        channel = broker.channel()
        try:
            channel.queue_delete(name)
        except broker.channel_errors:
            pass
        finally:
            if channel.is_open:
                channel.close()


def _task_samples(worker: WorkerProcess) -> dict[tuple[str, str], float]:
    """(task, outcome) -> count, and (task, "runs") -> observed run times, as served."""
    samples = {}
    for (name, labels), value in scraped(worker.metrics_url).items():
        label = dict(labels)
        if name == "emporium_celery_tasks_total":
            samples[(label["task"], label["outcome"])] = value
        elif name == "emporium_celery_task_duration_seconds_count":
            samples[(label["task"], "runs")] = value
    return samples


def test_task_outcomes_and_run_times_are_served_by_the_worker(
    start_worker: StartWorker, queue: str
) -> None:
    worker = start_worker(queues=queue, include=metric_tasks.TASKS_MODULE, concurrency=2)
    for _ in range(3):
        metric_tasks.succeed.apply_async(queue=queue)
    metric_tasks.fail.apply_async(queue=queue)
    metric_tasks.retry_once.apply_async(args=(queue,), queue=queue)
    metric_tasks.overrun.apply_async(queue=queue)
    expected = {
        ("tests.metrics.succeed", "succeeded"): 3.0,
        ("tests.metrics.succeed", "runs"): 3.0,
        ("tests.metrics.fail", "failed"): 1.0,
        ("tests.metrics.fail", "runs"): 1.0,
        ("tests.metrics.retry_once", "retried"): 1.0,
        ("tests.metrics.retry_once", "succeeded"): 1.0,
        ("tests.metrics.retry_once", "runs"): 2.0,
        # Its pool process was killed at the time limit: the main process counts it.
        ("tests.metrics.overrun", "failed"): 1.0,
    }

    def outcomes() -> dict[tuple[str, str], float]:
        # Whether a killed run's time was observed depends on how it died; not compared.
        samples = _task_samples(worker)
        samples.pop(("tests.metrics.overrun", "runs"), None)
        return samples

    assert wait_until(lambda: outcomes() == expected, timeout=30), (outcomes(), worker.log())
    assert listening_ports(worker.process.pid) == {worker.metrics_port}


def test_a_worker_whose_metrics_port_is_taken_stops_and_says_so(
    start_worker: StartWorker, queue: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="worker exited") as stopped:
            start_worker(queues=queue, extra_env={"METRICS_PORT": str(port)})

    assert f"cannot serve /metrics on 127.0.0.1:{port}" in str(stopped.value)
    assert "METRICS_PORT" in str(stopped.value)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its socket inodes matched in /proc/net)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_metrics_port_zero_serves_nothing_and_the_worker_runs(
    start_worker: StartWorker, queue: str
) -> None:
    worker = start_worker(
        queues=queue, include=metric_tasks.TASKS_MODULE, extra_env={"METRICS_PORT": "0"}
    )
    metric_tasks.succeed.apply_async(queue=queue)

    assert wait_until(lambda: "succeeded" in worker.log(), timeout=30), worker.log()
    assert listening_ports(worker.process.pid) == set()


def test_beat_counts_each_schedule_entry_it_sends_on_its_metrics_port(
    broker_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "beat.log"
    with log_path.open("wb") as log:
        beat = subprocess.Popen(  # noqa: S603
            [
                *(sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"),
                *("--schedule", str(tmp_path / "beat-schedule")),
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
                "BROKER_URL": broker_url,
                "METRICS_PORT": str(port),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/metrics"
    sent = ("emporium_beat_schedules_sent_total", frozenset({("schedule", "outbox-relay-sweep")}))

    def sweeps() -> float:
        try:
            return scraped(url).get(sent, 0.0)
        except OSError:
            return 0.0

    try:
        # The sweep is due every 5 s: two of them, each under its entry's name.
        assert wait_until(lambda: sweeps() >= 2, timeout=30), log_path.read_text()
        labels = {
            dict(labels)["schedule"]
            for (name, labels) in scraped(url)
            if name == "emporium_beat_schedules_sent_total"
        }
        # Only entries due within these seconds were sent, each counted under its own name.
        due_soon = {
            entry
            for entry, spec in settings.CELERY_BEAT_SCHEDULE.items()
            if isinstance(spec["schedule"], float | int) and spec["schedule"] < 60
        }
        assert "outbox-relay-sweep" in labels
        assert labels <= due_soon, labels - due_soon
    finally:
        stop_process(beat)


def test_a_scrape_reads_past_the_empty_file_of_a_process_that_just_started(
    tmp_path: Path,
) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from emporium.observability.metrics import _server_registry

    counted = MmapedDict(str(tmp_path / "counter_101.db"))
    name = "emporium_celery_tasks"
    key = mmap_key(name, f"{name}_total", ["task", "outcome"], ["t", "succeeded"], "runs")
    counted.write_value(key, 3.0, 0.0)
    counted.close()
    (tmp_path / "counter_102.db").touch()  # created, not yet sized by its process

    text = generate_latest(_server_registry(str(tmp_path))).decode()

    assert 'emporium_celery_tasks_total{outcome="succeeded",task="t"} 3.0' in text

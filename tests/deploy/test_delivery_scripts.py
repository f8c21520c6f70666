"""The CD workflow's steps: deploy/k8s/deploy.sh, rollback.sh and smoke.sh.

The scripts run for real. A stub ``kubectl`` (and ``kustomize``) on PATH stands
in for the cluster: it records each call and answers the migration Job's status
as the test says. smoke.sh runs against a real HTTP server whose answers the
test sets.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy import ROOT, script_run

K8S = ROOT / "deploy" / "k8s"
IMAGE = "ghcr.io/example/emporium@sha256:" + "ab" * 32

# Records argv (and stdin for `apply -f -`); answers the Job status and the
# Deployment list from the environment.
KUBECTL = """#!/bin/sh
echo "kubectl $*" >> "$CALLS"
case "$*" in
  *"apply -f -"*) cat >> "$CALLS" ;;
  *"jsonpath={.status.succeeded}"*) printf '%s' "${JOB_SUCCEEDED:-}" ;;
  *"jsonpath={.status.conditions"*) printf '%s' "${JOB_FAILED:-}" ;;
  *"get deployments"*) printf 'deployment.apps/emporium-web\\ndeployment.apps/emporium-worker\\n' ;;
esac
"""
KUSTOMIZE = """#!/bin/sh
echo "kustomize $*" >> "$CALLS"
"""


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, text in (("kubectl", KUBECTL), ("kustomize", KUSTOMIZE)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    # deploy.sh edits kustomization.yaml beside itself: run a copy.
    shutil.copytree(K8S, tmp_path / "k8s")
    calls = tmp_path / "calls"
    return tmp_path / "k8s", {"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(calls)}


def test_deploy_migrates_first_then_rolls_out_the_image(
    cluster: tuple[Path, dict[str, str]],
) -> None:
    directory, env = cluster
    done = script_run(directory / "deploy.sh", IMAGE, env={**env, "JOB_SUCCEEDED": "1"})
    assert done.returncode == 0, done.stderr
    calls = Path(env["CALLS"]).read_text()
    order = [
        "kubectl apply -f namespace.yaml -f configmap.yaml",
        "kubectl -n emporium delete job emporium-migrate",
        "kubectl -n emporium apply -f -",
        f"image: {IMAGE}",  # the Job, sent on stdin, runs the new image
        "jsonpath={.status.succeeded}",
        f"kustomize edit set image emporium={IMAGE}",
        "kubectl apply -k .",
        "rollout status deployment.apps/emporium-web",
        "rollout status deployment.apps/emporium-worker",
    ]
    positions = [calls.index(step) for step in order]
    assert positions == sorted(positions), calls


def test_a_failed_migration_stops_the_rollout(cluster: tuple[Path, dict[str, str]]) -> None:
    directory, env = cluster
    done = script_run(directory / "deploy.sh", IMAGE, env={**env, "JOB_FAILED": "True"})
    assert done.returncode != 0
    assert "the migration did not complete" in done.stderr
    calls = Path(env["CALLS"]).read_text()
    assert "logs job/emporium-migrate" in calls
    assert "apply -k" not in calls
    assert "kustomize" not in calls


def test_rollback_undoes_every_deployment_and_waits(cluster: tuple[Path, dict[str, str]]) -> None:
    directory, env = cluster
    assert script_run(directory / "rollback.sh", env=env).returncode == 0
    calls = Path(env["CALLS"]).read_text().splitlines()
    assert [line for line in calls if "rollout" in line] == [
        "kubectl -n emporium rollout undo deployment.apps/emporium-web",
        "kubectl -n emporium rollout undo deployment.apps/emporium-worker",
        "kubectl -n emporium rollout status deployment.apps/emporium-web --timeout=600s",
        "kubectl -n emporium rollout status deployment.apps/emporium-worker --timeout=600s",
    ]


# -- smoke.sh against a real HTTP server --------------------------------------------


class _App(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:
        status, body = type(self).answers.get(self.path, (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


HEALTHY = {
    "/healthz": (200, b'{"status": "live"}'),
    "/readyz": (200, b'{"status": "ready"}'),
    "/api/products/?page_size=1": (200, json.dumps({"results": [{"id": 1}]}).encode()),
}


@pytest.fixture
def app() -> Iterator[str]:
    _App.answers = dict(HEALTHY)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _smoke(url: str) -> subprocess.CompletedProcess[str]:
    return script_run(K8S / "smoke.sh", url, env={"PATH": os.environ["PATH"], "SMOKE_SECONDS": "1"})


def test_smoke_passes_a_healthy_deployment(app: str) -> None:
    done = _smoke(app)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ok: liveness", "ok: readiness", "ok: product list"]


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/readyz", (503, b'{"code": "not_ready"}')),
        ("/api/products/?page_size=1", (200, b"<html>maintenance</html>")),
        ("/api/products/?page_size=1", (200, b'{"results": null}')),
        ("/healthz", (500, b"")),
    ],
)
def test_smoke_fails_a_broken_deployment(app: str, path: str, answer: tuple[int, bytes]) -> None:
    _App.answers[path] = answer
    done = _smoke(app)
    assert done.returncode != 0
    assert "FAILED" in done.stderr


def test_each_step_alone_does_only_its_part(cluster: tuple[Path, dict[str, str]]) -> None:
    directory, env = cluster
    calls = Path(env["CALLS"])
    assert (
        script_run(
            directory / "deploy.sh", "migrate", IMAGE, env={**env, "JOB_SUCCEEDED": "1"}
        ).returncode
        == 0
    )
    assert "emporium-migrate" in calls.read_text()
    assert "apply -k" not in calls.read_text()
    calls.unlink()
    assert script_run(directory / "deploy.sh", "rollout", IMAGE, env=env).returncode == 0
    assert "apply -k" in calls.read_text()
    assert "emporium-migrate" not in calls.read_text()

"""Prometheus for the monitoring tests: promtool, a private Prometheus server, the panels.

``start_prometheus`` runs the real ``prometheus`` of Debian's package on a free
loopback port with a temporary data directory, on a configuration derived
from the committed ``deploy/prometheus/prometheus.yml``: the same jobs, paths
and rule file, with target files naming the test's ports, a token file of the
test's own, and a one-second scrape interval.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import ROOT, free_port, stop_process, wait_until

PROMETHEUS_DIRECTORY = ROOT / "deploy" / "prometheus"
GRAFANA_DIRECTORY = ROOT / "deploy" / "grafana"


def require_tool(name: str) -> str:
    """The tool's path; skips without it, or fails when EMPORIUM_REQUIRE_SERVICES=1."""
    path = shutil.which(name)
    if path is None:
        problem = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("EMPORIUM_REQUIRE_SERVICES") == "1":
            pytest.fail(f"EMPORIUM_REQUIRE_SERVICES=1 but {problem}")
        pytest.skip(problem)
    return path


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel}: {self.expr}"


def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards, by file name."""
    return {
        path.name: json.loads(path.read_text())
        for path in sorted((GRAFANA_DIRECTORY / "dashboards").glob("*.json"))
    }


def panel_queries() -> list[PanelQuery]:
    """Every query of every panel of every dashboard (rows' nested panels included)."""
    queries = []
    for dashboard in dashboards().values():
        panels = list(dashboard["panels"])
        while panels:
            panel = panels.pop(0)
            panels += panel.get("panels", [])
            for target in panel.get("targets", []):
                queries.append(PanelQuery(dashboard["title"], panel["title"], target["expr"]))
    return queries


def scrape_configuration_write(
    directory: Path, targets: dict[str, str], token_file: Path, *, interval: str = "15s"
) -> Path:
    """The committed configuration in ``directory``, each job's targets file naming
    ``targets[job]`` (host:port); the rule files are the committed ones. Returns its path."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIRECTORY / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(PROMETHEUS_DIRECTORY / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token_file)
        for discovery in job["file_sd_configs"]:
            for name in discovery["files"]:
                path = directory / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(yaml.safe_dump([{"targets": [targets[job["job_name"]]]}]))
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def api(self, path: str, **parameters: str) -> Any:
        query = urllib.parse.urlencode(parameters)
        with urllib.request.urlopen(  # noqa: S310 - the test's own server on loopback
            f"{self.url}{path}?{query}", timeout=10
        ) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> dict[str, Any]:
        """/api/v1/query's answer; a PromQL error is an answer with status "error"."""
        try:
            return dict(self.api("/api/v1/query", query=expr))
        except urllib.error.HTTPError as error:  # 400 and 422 carry the error as JSON
            return dict(json.loads(error.read()))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_prometheus(configuration: Path) -> Iterator[PrometheusServer]:
    """Prometheus on ``configuration``, its data and log beside it."""
    executable = require_tool("prometheus")
    directory = configuration.parent
    port = free_port()
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - Debian's prometheus
            [
                executable,
                f"--config.file={configuration}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log_path)

    def ready() -> bool:
        try:
            urllib.request.urlopen(server.url + "/-/ready", timeout=2).close()  # noqa: S310
        except OSError:
            return process.poll() is not None
        return True

    if not wait_until(ready, timeout=30) or process.poll() is not None:
        stop_process(process)
        raise RuntimeError(f"prometheus did not start:\n{server.log()}")
    try:
        yield server
    finally:
        stop_process(process)

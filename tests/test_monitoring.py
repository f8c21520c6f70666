"""The monitoring files of deploy/: Prometheus' configuration, the alert rules and
their unit tests (run by promtool), and the Grafana dashboards' definition.

promtool comes with Debian's ``prometheus`` package (CI installs it). Without it
these tests skip, and fail instead when EMPORIUM_REQUIRE_SERVICES=1. Whether the
dashboards' queries return data is tests/test_dashboards_live.py's question.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.monitoring import dashboards, panel_queries, require_tool

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
JOBS = {
    "emporium-web",
    "emporium-ws",
    "emporium-worker",
    "emporium-beat",
    "emporium-relay",
    "emporium-publisher",
}


def promtool(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - promtool on the repository's files
        [require_tool("promtool"), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def heading_anchor(heading: str) -> str:
    """The anchor GitHub and most Markdown renderers give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    committed = promtool("check", "config", "--syntax-only", PROMETHEUS / "prometheus.yml")
    assert committed.returncode == 0, committed.stdout + committed.stderr
    # In full (the rule file, the targets files and the token file read too), as installed.
    (tmp_path / "token").write_text("a-token\n")
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus" / "prometheus.yml").write_text(yaml.safe_dump(config))
    full = promtool("check", "config", tmp_path / "prometheus" / "prometheus.yml")
    assert full.returncode == 0, full.stdout + full.stderr


def test_every_process_is_scraped_and_the_app_ports_with_the_token() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == JOBS
    for name, job in jobs.items():
        files = [file for discovery in job["file_sd_configs"] for file in discovery["files"]]
        assert files == [f"targets/{name}.yml"]
        groups = yaml.safe_load((PROMETHEUS / files[0]).read_text())
        assert [target for group in groups for target in group["targets"]], name
    for name in ("emporium-web", "emporium-ws"):
        assert jobs[name]["authorization"]["type"] == "Bearer"
        assert jobs[name]["authorization"]["credentials_file"].startswith("/")
    assert config["rule_files"] == ["alerts.yml"]


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", PROMETHEUS / "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", PROMETHEUS / "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it must not."""
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules whose thresholds are out of reach fail for every alert."""
    rules = (PROMETHEUS / "alerts.yml").read_text()
    unreachable = re.sub(r"(expr: .*?)(> [\d.]+|== [01])", r"\1> 1e12", rules)
    unreachable = re.sub(r"(\n\s+)\) > [\d.]+\n", r"\1) > 1e12\n", unreachable)
    (tmp_path / "alerts.yml").write_text(unreachable)
    shutil.copy(PROMETHEUS / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert result.returncode != 0
    for name in {rule["alert"] for rule in alert_rules()}:
        assert f"alertname: {name}," in result.stdout + result.stderr, name


def test_every_alert_links_its_runbook_section() -> None:
    anchors = {
        heading_anchor(line.lstrip("#"))
        for line in MONITORING_DOC.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/monitoring.md#{rule['alert'].lower()}", rule["alert"]
        assert url.split("#", 1)[1] in anchors, f"docs/monitoring.md has no section {url}"
        assert rule["labels"]["severity"] in {"warning", "critical"}


# -- Grafana ---------------------------------------------------------------------------


def test_dashboard_files_are_what_their_definition_writes() -> None:
    result = subprocess.run(  # noqa: S603 - the repository's own script
        [sys.executable, str(GRAFANA / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_dashboards_use_the_provisioned_data_source_and_do_not_overlap() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uids = {source["uid"] for source in datasources if source["type"] == "prometheus"}
    seen_uids = set()
    assert dashboards()
    for name, dashboard in dashboards().items():
        assert dashboard["uid"] not in seen_uids, name
        seen_uids.add(dashboard["uid"])
        cells: set[tuple[int, int]] = set()
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            area = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert grid["x"] + grid["w"] <= 24
            assert not area & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= area
            if panel["type"] != "row":
                assert panel["targets"], f"{name}: {panel['title']} has no query"
                for target in panel["targets"]:
                    assert target["datasource"]["uid"] in uids


# -- the metrics the rules and panels read ---------------------------------------------------

# Named by the metrics contract and read by a rule and a panel, emitted by nothing yet.
RESERVED: set[str] = set()
_METRIC_NAME = re.compile(r"\bemporium_[a-z_]+\b")


def declared_families() -> dict[str, str]:
    """Every ``emporium_`` metric family the application declares, and its type."""
    from prometheus_client import REGISTRY

    import emporium.observability.domain_metrics
    import emporium.observability.metrics  # noqa: F401 - declares the web processes' metrics

    return {
        family.name: family.type
        for family in REGISTRY.collect()
        if family.name.startswith("emporium_")
    }


def sample_names(family: str, kind: str) -> set[str]:
    """The series names a family of ``kind`` is scraped as."""
    if kind == "counter":
        return {f"{family}_total"}
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return {family}


def used_names() -> dict[str, set[str]]:
    """Each metric name the alert rules and the dashboards' queries read, and where."""
    uses: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in _METRIC_NAME.findall(rule["expr"]):
            uses.setdefault(name, set()).add(f"alert {rule['alert']}")
    for query in panel_queries():
        for name in _METRIC_NAME.findall(query.expr):
            uses.setdefault(name, set()).add(f"panel {query.dashboard} / {query.panel}")
    return uses


def test_rules_and_panels_read_only_metrics_the_application_declares() -> None:
    declared = set(RESERVED)
    for family, kind in declared_families().items():
        declared |= sample_names(family, kind)
    unknown = {name: sorted(where) for name, where in used_names().items() if name not in declared}
    assert unknown == {}


def test_every_declared_metric_is_on_a_dashboard_and_in_the_documentation() -> None:
    used = set(used_names())
    document = MONITORING_DOC.read_text()
    for family, kind in declared_families().items():
        assert sample_names(family, kind) & used, f"{family} is on no dashboard"
        listed = f"{family}_total" if kind == "counter" else family
        assert f"`{listed}`" in document, f"docs/monitoring.md does not list {listed}"

"""deploy/compose: the stack parses (``docker-compose config``, no daemon needed),
holds every role and server, takes its secrets from files only, and the secrets
that make-secrets.sh generates are ones the production settings accept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import ENTRYPOINT, ROOT, fault_rejected, script_run, secret_variables

COMPOSE = ROOT / "deploy" / "compose"

APP_ROLES = {
    "migrate": ["migrate"],
    "web-1": ["web"],
    "web-2": ["web"],
    "ws": ["ws"],
    "worker": ["worker"],
    "beat": ["beat"],
    "relay": ["relay"],
    "publisher": ["publisher"],
}
SERVERS = {
    "nginx",
    "postgres",
    "postgres-replica",
    "redis",
    "rabbitmq",
    "prometheus",
    "grafana",
    "mail",
}


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("EMPORIUM_REQUIRE_SERVICES") == "1":
            pytest.fail("docker-compose is required (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed")
    return found


@pytest.fixture(scope="module")
def secrets_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("compose") / "secrets"
    subprocess.run(["/bin/sh", str(COMPOSE / "make-secrets.sh"), str(directory)], check=True)  # noqa: S603
    return directory


def compose_config(compose_file: Path, secrets: Path) -> subprocess.CompletedProcess[str]:
    """The validator call every test here makes: docker-compose's own parser."""
    return subprocess.run(  # noqa: S603
        [_docker_compose(), "-f", str(compose_file), "config"],
        cwd=compose_file.parent,
        env={"PATH": os.environ["PATH"], "EMPORIUM_SECRETS": str(secrets)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config(secrets_directory: Path) -> dict[str, Any]:
    done = compose_config(COMPOSE / "compose.yaml", secrets_directory)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = yaml.safe_load(done.stdout)
    return parsed


def test_every_role_and_server_is_a_service(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == set(APP_ROLES) | SERVERS | {"static", "provider"}
    for name, command in APP_ROLES.items():
        assert services[name]["command"] == command, name
        assert services[name]["image"] == services["web-1"]["image"]
    # Nothing of the app starts before the schema is migrated.
    for name in APP_ROLES.keys() - {"migrate"}:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_app_containers_are_locked_down(config: dict[str, Any]) -> None:
    for name in [*APP_ROLES, "static", "provider"]:
        service = config["services"][name]
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name  # noqa: S108
        assert "user" not in service, name  # the image's unprivileged user


def test_secrets_reach_the_app_as_files_only(
    config: dict[str, Any], secrets_directory: Path
) -> None:
    secret_names = set(secret_variables())
    for name in APP_ROLES:
        service = config["services"][name]
        environment = service["environment"]
        # No secret is given by value, in compose.yaml or in emporium.env.
        assert not secret_names & set(environment), name
        mounted = {entry["source"] for entry in service["secrets"]}
        for variable, path in environment.items():
            if variable.endswith("_FILE"):
                assert variable.removesuffix("_FILE") in secret_names, variable
                assert path == f"/run/secrets/{Path(path).name}"
                assert Path(path).name in mounted, (name, variable)
    for name, secret in config["secrets"].items():
        assert Path(secret["file"]) == secrets_directory / name
        assert (secrets_directory / name).is_file(), name
    # Files committed with the stack carry no random value make-secrets.sh made
    # (a second installation's differ: those are the random ones).
    other = secrets_directory.parent / "other"
    script_run(COMPOSE / "make-secrets.sh", str(other), env={"PATH": "/usr/bin:/bin"})
    committed = "".join(path.read_text() for path in COMPOSE.rglob("*") if path.is_file())
    random = [
        secret.read_text().strip()
        for secret in secrets_directory.iterdir()
        if secret.read_text() != (other / secret.name).read_text()
    ]
    assert len(random) >= len(list(secrets_directory.iterdir())) - 1  # all but email_url
    for value in random:
        assert value not in committed


def test_monitoring_mounts_the_prometheus_and_grafana_files(config: dict[str, Any]) -> None:
    services = config["services"]
    prometheus = {
        volume.split(":")[1]: volume.split(":")[0] for volume in _binds(services["prometheus"])
    }
    assert prometheus["/etc/prometheus/prometheus.yml"] == str(
        ROOT / "deploy/prometheus/prometheus.yml"
    )
    grafana = {volume.split(":")[1]: volume.split(":")[0] for volume in _binds(services["grafana"])}
    assert grafana["/etc/grafana/provisioning"] == str(ROOT / "deploy/grafana/provisioning")
    # Every host path a service mounts exists in the repository.
    for service in services.values():
        for volume in _binds(service):
            assert Path(volume.split(":")[0]).exists(), volume


def test_prometheus_scrapes_every_process_of_the_stack(config: dict[str, Any]) -> None:
    """The stack's targets name its own services, one target per process, on the
    port each serves /metrics on (an app server's PORT; for the others the port
    their own health check reads /metrics from); one file for each scrape job."""
    services = config["services"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in _binds(services["prometheus"])}
    targets_directory = Path(mounted["/etc/prometheus/targets"])
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert {path.stem for path in targets_directory.glob("*.yml")} == jobs

    def metrics_address(name: str, service: dict[str, Any]) -> str:
        if "PORT" in service["environment"]:
            return f"{name}:{service['environment']['PORT']}"
        probe = service["healthcheck"]["test"][-1]
        assert probe.startswith("http://127.0.0.1:"), name
        assert probe.endswith("/metrics"), name
        return f"{name}:{probe.split(':')[2].split('/')[0]}"

    for job in jobs:
        role = job.removeprefix("emporium-")
        groups = yaml.safe_load((targets_directory / f"{job}.yml").read_text())
        scraped = sorted(target for group in groups for target in group["targets"])
        expected = sorted(
            metrics_address(name, service)
            for name, service in services.items()
            if service.get("command") == [role]
        )
        assert expected, job
        assert scraped == expected, job


def _binds(service: dict[str, Any]) -> list[str]:
    return [
        volume
        for volume in service.get("volumes", [])
        if isinstance(volume, str) and volume.startswith("/")
    ]


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("    healthcheck: {disable: true}\n", "    healthcheck: {disabled: true}\n"),
        ('      PORT: "8000"\n', "      PORT: [8000]\n"),
        ("        condition: service_completed_successfully\n", "        condition: finished\n"),
    ],
)
def test_a_broken_stack_is_rejected(
    original: str, broken: str, secrets_directory: Path, tmp_path: Path
) -> None:
    shutil.copy(COMPOSE / "emporium.env", tmp_path / "emporium.env")
    fault_rejected(
        lambda copy: compose_config(copy, secrets_directory),
        (COMPOSE / "compose.yaml").read_text(),
        tmp_path / "compose.yaml",
        original,
        broken,
    )


def _check_deploy(secrets: Path) -> subprocess.CompletedProcess[str]:
    """manage.py check --deploy on the production settings, the secrets read from files."""
    environment = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    for line in (COMPOSE / "emporium.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            environment[name] = value
    # TLS in front, as in production: then there is nothing to warn about.
    environment.update(SECURE_SSL_REDIRECT="true", SECURE_HSTS_SECONDS="31536000")
    for variable in secret_variables():
        if (secrets / variable.lower()).is_file():
            environment[f"{variable}_FILE"] = str(secrets / variable.lower())
    return script_run(
        ENTRYPOINT,
        "manage",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env=environment,
        timeout=120,
    )


def test_generated_secrets_satisfy_the_production_settings(
    secrets_directory: Path, tmp_path: Path
) -> None:
    done = _check_deploy(secrets_directory)
    assert done.returncode == 0, done.stdout + done.stderr
    # A weak key in the same place is refused, so the check above could fail.
    weak = tmp_path / "weak"
    shutil.copytree(secrets_directory, weak)
    (weak / "secret_key").chmod(0o644)
    (weak / "secret_key").write_text("short\n")
    refused = _check_deploy(weak)
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stderr


def test_make_secrets_keeps_what_exists(secrets_directory: Path) -> None:
    before = {path.name: path.read_text() for path in secrets_directory.iterdir()}
    subprocess.run(  # noqa: S603
        ["/bin/sh", str(COMPOSE / "make-secrets.sh"), str(secrets_directory)],
        check=True,
        capture_output=True,
    )
    assert {path.name: path.read_text() for path in secrets_directory.iterdir()} == before
    assert secrets_directory.stat().st_mode & 0o777 == 0o700
    # The URLs carry the passwords of the servers they name.
    password = before["postgres_password"].strip()
    assert f"emporium:{password}@postgres:5432/emporium" in before["database_url"]

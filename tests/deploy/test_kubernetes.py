"""deploy/k8s: every manifest passes kubernetes-validate's strict schemas (offline,
bundled with the tool), broken ones are rejected by the same call, and the
manifests agree with each other and with the image (roles, probes, secrets).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import ROOT, fault_rejected, secret_variables

K8S = ROOT / "deploy" / "k8s"
# A version kubernetes-validate ships schemas for; strict rejects unknown fields.
KUBERNETES_VERSION = "1.33.0"
VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
ROLES = {"web", "ws", "worker", "beat", "relay", "publisher", "migrate"}


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    """The validator call every test here makes."""
    return subprocess.run(  # noqa: S603
        [str(VALIDATOR), "--kubernetes-version", KUBERNETES_VERSION, "--strict", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _documents() -> list[dict[str, Any]]:
    return [
        document
        for path in MANIFESTS
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _documents() if doc["kind"] == kind}


def test_every_manifest_passes_the_strict_schemas() -> None:
    done = kubernetes_validate(*MANIFESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        # an unknown field (strict)
        ("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"),
        # a wrong type
        ("minReplicas: 2", "minReplicas: two"),
        # a required field missing (a Service port without its port)
        ("      port: 80\n", ""),
    ],
)
def test_a_broken_manifest_is_rejected(original: str, broken: str, tmp_path: Path) -> None:
    path = next(path for path in MANIFESTS if original in path.read_text())
    fault_rejected(kubernetes_validate, path.read_text(), tmp_path / path.name, original, broken)


def test_kustomization_applies_every_manifest_but_the_job() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {path.name for path in MANIFESTS} - {
        "job-migrate.yaml"
    }
    assert [image["name"] for image in kustomization["images"]] == ["emporium"]


def _pods() -> dict[str, dict[str, Any]]:
    """Every pod template: the Deployments' and the migration Job's, by role."""
    pods = {}
    for kind in ("Deployment", "Job"):
        for document in _of_kind(kind).values():
            template = document["spec"]["template"]
            pods[template["metadata"]["labels"]["app.kubernetes.io/component"]] = template["spec"]
    return pods


def test_one_pod_per_role_running_the_entrypoint_role_locked_down() -> None:
    pods = _pods()
    assert set(pods) == ROLES | {"static"}
    for role, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, role
        if role == "static":
            continue
        (container,) = pod["containers"]
        assert container["image"] == "emporium"
        assert container["args"] == [role]
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert "/tmp" in mounts  # noqa: S108 - the one writable path


def test_static_files_come_from_the_release_image() -> None:
    pod = _pods()["static"]
    (collect,) = pod["initContainers"]
    (nginx,) = pod["containers"]
    assert collect["image"] == "emporium"
    copied_to = next(m["mountPath"] for m in collect["volumeMounts"] if m["name"] == "static")
    assert f"/app/staticfiles/. {copied_to}/" in collect["args"][-1]
    served = next(m for m in nginx["volumeMounts"] if m["name"] == "static")
    assert served == {
        "name": "static",
        "mountPath": "/usr/share/nginx/html/static",
        "readOnly": True,
    }


def test_http_roles_probe_healthz_and_readyz_as_an_allowed_host() -> None:
    config = _of_kind("ConfigMap")["emporium-config"]["data"]
    first_host = config["ALLOWED_HOSTS"].split(",")[0]
    pods = _pods()
    for role in ("web", "ws"):
        (container,) = pods[role]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
            assert headers == {"Host": first_host, "X-Forwarded-Proto": "https"}
    for role in ("worker", "beat", "relay", "publisher"):
        (container,) = pods[role]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"


def test_secrets_are_referenced_never_given() -> None:
    assert not [doc for doc in _documents() if doc["kind"] == "Secret"]
    config = _of_kind("ConfigMap")["emporium-config"]["data"]
    secret_names = set(secret_variables())
    assert not secret_names & set(config)
    files = {name.removesuffix("_FILE") for name in config if name.endswith("_FILE")}
    assert files == secret_names
    for role, pod in _pods().items():
        if role == "static":
            assert not [v for v in pod["volumes"] if "secret" in v]  # needs none
            continue
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "emporium-secrets"
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        for variable in files:
            assert config[f"{variable}_FILE"].startswith(mount["mountPath"] + "/")


def test_services_hpas_pdbs_and_ingress_point_at_what_exists() -> None:
    deployments = _of_kind("Deployment")
    labels = {
        name: doc["spec"]["template"]["metadata"]["labels"] for name, doc in deployments.items()
    }

    def selects(selector: dict[str, str]) -> list[str]:
        return [name for name, have in labels.items() if selector.items() <= have.items()]

    services = _of_kind("Service")
    for name, service in services.items():
        assert selects(service["spec"]["selector"]) == [name], name
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        port_names = {port["name"] for port in container["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    for pdb in _of_kind("PodDisruptionBudget").values():
        assert len(selects(pdb["spec"]["selector"]["matchLabels"])) == 1
    targets = {
        hpa["spec"]["scaleTargetRef"]["name"]
        for hpa in _of_kind("HorizontalPodAutoscaler").values()
    }
    assert targets == {"emporium-web", "emporium-worker"}
    for name in targets:
        assert "replicas" not in deployments[name]["spec"]  # the HPA owns the count
    (ingress,) = _of_kind("Ingress").values()
    paths = {
        path["path"]: path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert paths == {
        "/ws/": "emporium-ws",
        "/static/": "emporium-static",
        "/": "emporium-web",
    }

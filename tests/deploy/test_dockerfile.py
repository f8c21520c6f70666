"""deploy/docker/Dockerfile: hadolint passes it (and fails a broken copy), and
what it copies from the build context exists and is not left out by .dockerignore.
No image is built here (no Docker daemon); the entry point it runs is tested on
the host in test_entrypoint.py.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.deploy import ROOT, fault_rejected

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """The validator call every test here makes (any finding fails)."""
    return subprocess.run(  # noqa: S603
        [str(HADOLINT), "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_hadolint_passes() -> None:
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        # an unpinned base image
        (
            "ARG PYTHON_IMAGE=python:3.11-alpine3.22",
            "FROM python:latest AS extra\nARG PYTHON_IMAGE=python:3.11-alpine3.22",
        ),
        # a package installed without a pinned version and with a cache left behind
        ("WORKDIR /app\nCOPY --from=venv", "RUN apk add curl\nWORKDIR /app\nCOPY --from=venv"),
        # the last user root
        ("ENTRYPOINT [", "USER root\nENTRYPOINT ["),
    ],
)
def test_a_broken_dockerfile_is_rejected(original: str, broken: str, tmp_path: Path) -> None:
    fault_rejected(hadolint, DOCKERFILE.read_text(), tmp_path / "Dockerfile", original, broken)


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if any(fnmatch.fnmatch(candidate, pattern) for candidate in candidates):
            ignored = not negated
    return ignored


def test_what_it_copies_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for instruction, arguments in _instructions():
        if instruction == "COPY" and "--from=" not in arguments:
            words = [word for word in arguments.split() if not word.startswith("--")]
            sources.extend(words[:-1])
    assert "requirements.lock" in sources
    assert "deploy/docker/entrypoint.sh" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source.rstrip("/"), patterns), source
    # and what must stay out of an image does.
    for secret in (".env", "var/secrets.json", "deploy/compose/secrets/secret_key", ".git/config"):
        assert _ignored(secret, patterns), secret


def test_runtime_is_unprivileged_hashed_and_self_checking() -> None:
    instructions = _instructions()
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    runs = " ".join(arguments for instruction, arguments in instructions if instruction == "RUN")
    assert "--require-hashes" in runs
    assert "--only-binary=:all:" in runs
    assert "npm ci --ignore-scripts" in runs
    assert "collectstatic" in runs
    (healthcheck,) = [
        arguments for instruction, arguments in instructions if instruction == "HEALTHCHECK"
    ]
    assert '["emporium-entrypoint", "healthcheck"]' in healthcheck
    (entrypoint,) = [
        arguments for instruction, arguments in instructions if instruction == "ENTRYPOINT"
    ]
    assert entrypoint == '["emporium-entrypoint"]'

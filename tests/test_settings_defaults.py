"""Safe by default: no profile named means production's refusal; .env is read only on request.

Every entry point (the WSGI and ASGI applications, the Celery app, manage.py)
defaults to ``config.settings.production``, which refuses to start without its
secrets. Each is started here in a subprocess whose environment holds no
profile and no secret, as a deployment that forgot them would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_REFUSAL = "This is config.settings.production"


def _clean_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No DJANGO_SETTINGS_MODULE and no secret; what a mistaken start writes stays in tmp."""
    return {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SQLITE_PATH": str(tmp_path / "var" / "emporium.sqlite3"),
        "SECRETS_PATH": str(tmp_path / "var" / "secrets.json"),
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


def _run(
    arguments: list[str], *, environment: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


ENTRY_POINTS = {
    "wsgi": ["-c", "import config.wsgi"],
    "asgi": ["-c", "import config.asgi"],
    # The worker reads its broker from the settings before it connects to anything.
    "celery worker": ["-m", "celery", "-A", "config", "worker", "--loglevel", "INFO"],
    "manage.py": ["manage.py", "check"],
}


@pytest.mark.parametrize("arguments", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_an_entry_point_without_a_profile_or_secrets_refuses_to_start(
    arguments: list[str], tmp_path: Path
) -> None:
    completed = _run(arguments, environment=_clean_environment(tmp_path))

    assert completed.returncode != 0, completed.stdout
    assert "ImproperlyConfigured" in completed.stderr
    assert PRODUCTION_REFUSAL in completed.stderr
    assert not (tmp_path / "var" / "emporium.sqlite3").exists()


@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi"])
def test_the_same_entry_point_starts_on_the_embedded_profile_when_asked(
    module: str, tmp_path: Path
) -> None:
    """The refusal above is the profile's doing, not a broken import."""
    environment = _clean_environment(tmp_path, DJANGO_SETTINGS_MODULE="config.settings.embedded")

    completed = _run(
        ["-c", f"import {module}; print(type({module}.application).__name__)"],
        environment=environment,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip()


def _project_copy(tmp_path: Path, dot_env: str | None) -> Path:
    """The config package alone, in a project root of its own, with or without a .env file."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "config", root / "config", ignore=shutil.ignore_patterns("__pycache__"))
    if dot_env is not None:
        (root / ".env").write_text(dot_env)
    return root


_PRINT_AUDIENCE = (
    "from config.settings import env; print(env.BASE_DIR); print(env.ENV.jwt_audience)"
)


def _audience(root: Path, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return _run(
        ["-c", _PRINT_AUDIENCE], environment=_clean_environment(tmp_path, **extra), cwd=root
    )


def test_dot_env_is_ignored_unless_asked(tmp_path: Path) -> None:
    root = _project_copy(tmp_path, "JWT_AUDIENCE=from-the-file\n")

    completed = _audience(root, tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [str(root), "emporium-api"]


def test_a_dot_env_file_cannot_ask_for_itself(tmp_path: Path) -> None:
    root = _project_copy(tmp_path, "DJANGO_READ_DOT_ENV_FILE=true\nJWT_AUDIENCE=from-the-file\n")

    completed = _audience(root, tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [str(root), "emporium-api"]


def test_dot_env_is_read_when_asked_and_the_real_environment_wins(tmp_path: Path) -> None:
    root = _project_copy(tmp_path, "JWT_AUDIENCE=from-the-file\nJWT_ISSUER=file-issuer\n")

    from_the_file = _audience(root, tmp_path, DJANGO_READ_DOT_ENV_FILE="true")
    from_the_environment = _audience(
        root, tmp_path, DJANGO_READ_DOT_ENV_FILE="true", JWT_AUDIENCE="from-the-environment"
    )

    assert from_the_file.returncode == 0, from_the_file.stderr
    assert from_the_file.stdout.splitlines() == [str(root), "from-the-file"]
    assert from_the_environment.returncode == 0, from_the_environment.stderr
    assert from_the_environment.stdout.splitlines() == [str(root), "from-the-environment"]


def test_asking_for_a_missing_dot_env_is_an_error(tmp_path: Path) -> None:
    root = _project_copy(tmp_path, None)

    completed = _audience(root, tmp_path, DJANGO_READ_DOT_ENV_FILE="true")

    assert completed.returncode != 0
    assert "DJANGO_READ_DOT_ENV_FILE is set but" in completed.stderr

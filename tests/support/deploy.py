"""Helpers of the deployment files' tests (tests/deploy): running their shell
scripts, the entry point's list of secret variables, and the check that a
validator rejects a broken copy of a file for the fault put in it alone.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"


def script_run(
    script: Path, *argv: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``/bin/sh script argv`` from the repository root, its output captured."""
    return subprocess.run(  # noqa: S603 - the project's own scripts
        ["/bin/sh", str(script), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def secret_variables() -> list[str]:
    """The variables the entry point reads from NAME_FILE (its SECRET_VARIABLES)."""
    text = ENTRYPOINT.read_text()
    start = text.index('SECRET_VARIABLES="') + len('SECRET_VARIABLES="')
    return text[start : text.index('"', start)].split()


def fault_rejected(
    validate: Callable[[Path], subprocess.CompletedProcess[str]],
    text: str,
    copy: Path,
    original: str,
    broken: str,
) -> None:
    """``validate`` fails ``text`` with ``original`` made ``broken``, and passes it unchanged
    at the same path: the fault, not the copy's place, is what was rejected."""
    assert original in text
    copy.write_text(text.replace(original, broken, 1))
    assert validate(copy).returncode != 0, f"{broken!r} passed"
    copy.write_text(text)
    done = validate(copy)
    assert done.returncode == 0, done.stdout + done.stderr

"""pip-audit over both lock files; fails on any known vulnerability not accepted.

Accepted vulnerabilities are listed in ``.ci/pip-audit-accepted.txt``, one per
line: the advisory id, then why it does not apply to Emporium. The list is
empty today.

pip-audit asks a vulnerability service (PyPI's JSON API for each pinned
version, or OSV) about every pin. Where that service cannot be reached, or does
not know a package, pip-audit reports the package as skipped rather than
clean: this script prints those as NOT AUDITED and fails on them when
``DEPENDENCY_AUDIT_REQUIRED=1`` (set it wherever the service is reachable, as
in the project's hosted CI). It never reports a skipped package as clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILES = ["requirements.lock", "requirements-dev.lock"]
ACCEPTED_FILE = ROOT / ".ci" / "pip-audit-accepted.txt"


def accepted_ids() -> dict[str, str]:
    accepted: dict[str, str] = {}
    for raw in ACCEPTED_FILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        advisory, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{ACCEPTED_FILE.name}: {advisory} has no reason")
        accepted[advisory] = reason.strip()
    return accepted


def audit(lock_file: str) -> dict[str, Any]:
    completed = subprocess.run(  # noqa: S603 - fixed arguments, the venv's own pip-audit
        [
            sys.executable,
            "-m",
            "pip_audit",
            "-r",
            lock_file,
            "--require-hashes",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "-f",
            "json",
            "--timeout",
            "20",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if not completed.stdout.strip():
        raise SystemExit(f"pip-audit failed on {lock_file}:\n{completed.stderr}")
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def main() -> int:
    accepted = accepted_ids()
    found: list[str] = []
    skipped: list[str] = []
    audited = 0
    for lock_file in LOCK_FILES:
        report = audit(lock_file)
        for dependency in report["dependencies"]:
            if "skip_reason" in dependency:
                skipped.append(f"{lock_file}: {dependency['skip_reason']}")
                continue
            audited += 1
            for vulnerability in dependency.get("vulns", []):
                ids = {vulnerability["id"], *vulnerability.get("aliases", [])}
                if ids & accepted.keys():
                    continue
                found.append(
                    f"{lock_file}: {dependency['name']} {dependency['version']} "
                    f"{vulnerability['id']} (fixed in {', '.join(vulnerability['fix_versions'])})"
                )
    print(f"pip-audit: {audited} pins audited, {len(found)} unaccepted vulnerabilities")
    for line in found:
        print("  VULNERABLE", line)
    if skipped:
        print(f"pip-audit: {len(skipped)} pins NOT AUDITED (vulnerability service unreachable?)")
        for line in skipped[:5]:
            print("  ", line)
    if found:
        return 1
    if skipped and os.environ.get("DEPENDENCY_AUDIT_REQUIRED") == "1":
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs bandit over the application code and fails on any finding nobody reviewed.

A finding counts as reviewed when a line it spans carries ruff's suppression for
the same rule with a reason: ``# noqa: S608 - only constants are interpolated``
or ``# noqa: S608 (constant table names)``.
Ruff runs the same rule set (its ``S`` rules are ports of bandit's) on every
commit, so the reason is written once, where the code is, and both tools honour it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["emporium", "config"]
EXCLUDE = "*/tests/*,*/migrations/*"

# bandit test id -> the ruff rule that flags the same pattern.
RUFF_EQUIVALENT = {
    "B101": "S101",
    "B105": "S105",
    "B106": "S106",
    "B107": "S107",
    "B108": "S108",
    "B110": "S110",
    "B112": "S112",
    "B311": "S311",
    "B308": "S308",
    "B703": "S308",
    "B608": "S608",
    "B602": "S602",
    "B603": "S603",
    "B604": "S604",
    "B605": "S605",
    "B606": "S606",
    "B607": "S607",
    "B404": "S404",
}
REASONED_NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z0-9, ]+?)\s*(?:-\s+|\()\w")


def reviewed(path: Path, line_range: list[int], rule: str | None) -> bool:
    if rule is None:
        return False
    lines = path.read_text(encoding="utf-8").splitlines()
    first, last = min(line_range), max(line_range)
    for number in range(first, last + 1):
        if number - 1 >= len(lines):
            break
        match = REASONED_NOQA.search(lines[number - 1])
        if match and rule in {code.strip() for code in match.group("codes").split(",")}:
            return True
    return False


def main() -> int:
    completed = subprocess.run(  # noqa: S603 - fixed arguments, the venv's own bandit
        [sys.executable, "-m", "bandit", "-r", *TARGETS, "-x", EXCLUDE, "-q", "-f", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(completed.stdout)
    if report.get("errors"):
        print("bandit could not scan:", report["errors"], file=sys.stderr)
        return 2
    unreviewed = []
    for finding in report["results"]:
        path = ROOT / finding["filename"]
        rule = RUFF_EQUIVALENT.get(finding["test_id"])
        if not reviewed(path, finding["line_range"], rule):
            unreviewed.append(finding)
    total = len(report["results"])
    print(f"bandit: {total} findings, {total - len(unreviewed)} reviewed in the code")
    for finding in unreviewed:
        print(
            f"  UNREVIEWED {finding['filename']}:{finding['line_number']} "
            f"{finding['test_id']} {finding['issue_text']}"
        )
    return 1 if unreviewed else 0


if __name__ == "__main__":
    sys.exit(main())

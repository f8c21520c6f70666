"""The project's documents speak of the project: its code, its commands, its figures.

Every Markdown document git tracks (README.md, SECURITY.md, docs/, docs/adr/)
is read. A document fails when it points at how the project was built rather
than at what it is: numbered work items, rounds or sessions of work, other
people's machines or benchmarks, or result files git does not keep. A figure
is quoted with the command that reproduces it instead. Every ADR follows one
template:

    # NNNN. Title

    Status: accepted            (or: superseded by NNNN)
    Date: YYYY-MM-DD

    ## Context
    ## Decision
    ## Consequences             (other sections may sit between them)

Run it alone with ``python -m pytest tests/test_documents.py``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADR_DIRECTORY = "docs/adr/"

# (pattern, what it points at). Case-insensitive. Each names the lab-notebook
# habit, not an ordinary word: "round trip", "Django session" and "rounded
# down" are fine; "round 2", "this session" and "issue 4" are not.
FORBIDDEN = [
    (r"(?<![\w&/`])#\d+\b", "an issue or pull-request number"),
    (r"\bissue\s+#?\d+|\b(ticket|work item)s?\s+#?\d+", "a numbered work item"),
    (r"\b(in|of|from|by) the issue\b", "the issue that asked for the work"),
    (r"\brounds?\s+\d+|\b\d+(st|nd|rd|th)\s+round\b", "a numbered round of work"),
    (
        r"\b(this|each|an? earlier|the previous|the first|the last|the next|another|"
        r"earlier|previous|later|one|two|three) (round|session)s?\b"
        r"(?![\s-]+(cookie|id|key|trips?|up|down|half))",
        "a round or session of work",
    ),
    (r"\bsessions?\s+\d+\b", "a numbered session of work"),
    (r"bench/results", "a git-ignored result file"),
    (r"REFERENCE_FIGURES", "figures measured outside the project"),
    (r"\b(other|another) helpers?\b|\bhelpers'", "other people's work"),
    (
        r"\b(this|that|the same|another|a faster|a slower|the faster|the slower|a quiet|"
        r"a busy|the busy|other) machines?\b",
        "a particular machine rather than a stated configuration",
    ),
]
_FORBIDDEN = [(re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in FORBIDDEN]
# Code blocks show commands and output verbatim; their lines are checked too,
# except for these, which are parts of real output or syntax.
_ALLOWED_LINES = [re.compile(r"^\s*\|?\s*`?#\d+\s")]

_ADR_TITLE = re.compile(r"^# (\d{4})\. \S.*$")
_ADR_STATUS = re.compile(r"^Status: (accepted|superseded by \d{4})\b")
_ADR_DATE = re.compile(r"^Date: \d{4}-\d{2}-\d{2}$")
_ADR_SECTIONS = ("## Context", "## Decision", "## Consequences")


def _tracked_documents() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.md"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return sorted(
        path
        for path in listed.split("\0")
        if path and not path.startswith(("frontend/node_modules/",)) and (ROOT / path).is_file()
    )


DOCUMENTS = _tracked_documents()
ADRS = [path for path in DOCUMENTS if path.startswith(ADR_DIRECTORY)]


def lab_notebook_references(text: str) -> list[str]:
    """``line N: "excerpt" (what it points at)`` for each forbidden reference in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if any(allowed.search(line) for allowed in _ALLOWED_LINES):
            continue
        for pattern, reason in _FORBIDDEN:
            for match in pattern.finditer(line):
                found.append(f'line {number}: "{match.group(0)}" ({reason})')
    return found


def adr_template_problems(text: str, *, file_name: str) -> list[str]:
    """What ``text`` lacks of the ADR template; empty when it follows it."""
    lines = text.splitlines()
    header = [line for line in lines[:8] if line.strip()]
    problems = []
    title = _ADR_TITLE.match(header[0]) if header else None
    if title is None:
        problems.append('the first line is not "# NNNN. Title"')
    elif not file_name.startswith(title.group(1) + "-"):
        problems.append(f"the title's number {title.group(1)} is not the file's")
    if len(header) < 2 or not _ADR_STATUS.match(header[1]):
        problems.append('the second line is not "Status: accepted" or "Status: superseded by NNNN"')
    if len(header) < 3 or not _ADR_DATE.match(header[2]):
        problems.append('the third line is not "Date: YYYY-MM-DD"')
    positions = []
    for section in _ADR_SECTIONS:
        if section not in lines:
            problems.append(f'no "{section}" section')
        else:
            positions.append(lines.index(section))
    if positions != sorted(positions):
        problems.append("Context, Decision and Consequences are not in that order")
    return problems


@pytest.mark.parametrize("path", DOCUMENTS)
def test_a_document_speaks_of_the_project_alone(path: str) -> None:
    references = lab_notebook_references((ROOT / path).read_text())

    assert not references, f"{path}:\n" + "\n".join(references)


@pytest.mark.parametrize("path", ADRS)
def test_an_adr_follows_the_template(path: str) -> None:
    problems = adr_template_problems((ROOT / path).read_text(), file_name=Path(path).name)

    assert not problems, f"{path}: " + "; ".join(problems)


def test_adr_numbers_are_unique_and_the_documents_are_found() -> None:
    numbers = [Path(path).name[:4] for path in ADRS]

    assert "README.md" in DOCUMENTS
    assert len(ADRS) >= 20
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize(
    "text",
    [
        "As issue 4 asks, lists are fast.",
        "Fixed in #12.",
        "Measured in round 2 of the work.",
        "This session's figures are higher.",
        "The first session measured 210 orders/s.",
        "Run C came from session 4.",
        "See bench/results/catalog-20261122.json.",
        "REFERENCE_FIGURES.md measured Channels.",
        "Other helpers' benchmarks ran at the same time.",
        "On a faster machine it served 2,000 req/s.",
    ],
)
def test_the_check_catches_each_kind_of_reference(text: str) -> None:
    assert lab_notebook_references(text)


@pytest.mark.parametrize(
    "text",
    [
        "One round trip per checkout, including the commit.",
        "The Django session of a staff user; the session cookie is HttpOnly.",
        "Minutes are rounded down; devices are polled round-robin.",
        "Ratings that round half to even, and one round trip.",
        "The `error_body()` helper writes the error shape.",
        "Measured on 2 cores with `python -m bench.checkout --seconds 15`.",
        "A developer's machine, CI and production install the same versions.",
        "Headings link as [Context](#context).",
    ],
)
def test_the_check_lets_ordinary_words_through(text: str) -> None:
    assert lab_notebook_references(text) == []


def test_the_template_check_reads_a_conforming_adr() -> None:
    text = (
        "# 0042. A title\n\nStatus: accepted\nDate: 2026-12-07\n\n"
        "## Context\n\nx\n\n## Decision\n\ny\n\n## Consequences\n\nz\n"
    )

    assert adr_template_problems(text, file_name="0042-a-title.md") == []
    assert adr_template_problems(text.replace("Status: accepted\n", ""), file_name="0042-a.md")
    assert adr_template_problems(text, file_name="0043-a-title.md")

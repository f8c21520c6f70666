"""The page's JavaScript unit tests (frontend/test/), run by Node's own test runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from emporium.search.tests.support import REQUIRE_SERVICES

FRONTEND = Path(__file__).resolve().parents[3] / "frontend"


def test_javascript_units_pass() -> None:
    node = shutil.which("node")
    if node is None:
        if REQUIRE_SERVICES:
            pytest.fail("EMPORIUM_REQUIRE_SERVICES=1 but Node.js is not installed")
        pytest.skip("Node.js is not installed")
    result = subprocess.run(  # noqa: S603 - node on the repository's own tests
        [node, "--test", "test/"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
    assert "# pass 0" not in result.stdout

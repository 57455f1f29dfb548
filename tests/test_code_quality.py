"""The linters the project is configured with (pyproject.toml) run as part of the suite, so CI runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_ruff_is_clean() -> None:
    proc = _run("ruff", "check", "--output-format", "concise", "src", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    proc = _run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.xdist_group("code_quality")
def test_xdist_groups_are_honoured(request: pytest.FixtureRequest) -> None:
    """Under ``pytest -n N --dist loadgroup`` (scripts/test.sh) a module marked with ``xdist_group``
    must run on one worker: its module-scoped server is built once and its tests that follow one
    another (review, then sign, then check the signed SR) stay in order.  pytest-xdist marks such a
    test by appending ``@group`` to its node id; with pytest 9 it silently stopped doing so."""
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist workers only
        pytest.skip("only meaningful when the suite runs on xdist workers with --dist loadgroup")
    assert request.node.nodeid.endswith("@code_quality"), request.node.nodeid

"""Fixtures of the browser tests: Chromium (Debian's, driven by Playwright) and the artifacts folder
(screenshots, timings.json; gitignored)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_env import ARTIFACTS, launch


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Any:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

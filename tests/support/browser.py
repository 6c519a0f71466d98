"""Headless Chromium from Debian's package, driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
UI_TIMEOUT_MS = 15_000  # the longest a page may take to show what a test waits for

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return os.environ.get("SEALROOM_CHROMIUM") or shutil.which("chromium")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: object) -> AsyncIterator[object]:
    context = await browser.new_context()  # type: ignore[attr-defined]
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


async def prepare_page(
    page: Any, viewport: dict[str, int], timeout_ms: int = UI_TIMEOUT_MS
) -> Any:
    """Bounded waits and a fixed size, so screenshots and timings are comparable."""
    page.set_default_timeout(timeout_ms)
    await page.set_viewport_size(viewport)
    return page


async def new_page(browser: Any, viewport: dict[str, int], timeout_ms: int = UI_TIMEOUT_MS) -> Any:
    """A page in a context of its own: another browser, profile or device of the customer."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    return page


async def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    """docs/images/`name`.png, so the documentation shows the page as it really is; written
    only when asked (SEALROOM_SCREENSHOTS=1 ./scripts/test tests/e2e)."""
    if not os.environ.get("SEALROOM_SCREENSHOTS"):
        return
    IMAGES.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=full_page)

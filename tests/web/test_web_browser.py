"""The live book page in a real headless browser (Debian's Chromium, driven by
Playwright): sign in with a token, create a book from photos, have its story written,
illustrate it and watch every page's picture appear, a flagged page said so, and the
final status. A screenshot is kept under .data/test-artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

from storywink.demo.sample_book import write_sample_photos
from tests.support.fakes.gemini_server import Fault
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes
from tests.support.services import missing
from tests.support.web_app import WEB_SETTINGS, running_app, token_for

pytestmark = pytest.mark.process  # a browser process

ARTIFACTS: Final = Path(os.environ.get("STORYWINK_TEST_ARTIFACTS", ".data/test-artifacts"))
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS: Final = 60_000


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium not installed (Debian: apt-get install chromium; .ci/run does)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing("playwright not installed: install the dev dependencies")
    return found


@pytest.fixture
async def browser_page() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    executable = chromium()
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield await browser.new_page(viewport={"width": 1100, "height": 1400})
        finally:
            await browser.close()


async def test_a_parent_watches_their_book_fill_in_on_the_live_page(
    browser_page: object, fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    from playwright.async_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    pipeline = fake_pipeline.with_settings(**WEB_SETTINGS)
    fakes.gemini.fail_when("Page 3: the child", Fault.blocked("SAFETY"))
    photos = write_sample_photos(tmp_path / "photos", 3)

    async with (
        running_app(pipeline.settings) as url,
        pipeline.worker(),
    ):
        await page.goto(f"{url}/#token={token_for('parent-browser')}")
        await expect(page.locator("#who")).to_have_text("signed in as parent-browser")

        await page.set_input_files("#photos", [str(photo) for photo in photos])
        await page.fill("#title", "Mia at the Park")
        await page.fill("#child-name", "Mia")
        await page.click("#create-button")
        await expect(page.locator("#book-status")).to_have_text("DRAFT", timeout=WAIT_MS)
        await expect(page.locator(".page img.photo")).to_have_count(3)

        await page.click("#write-story")
        await expect(page.locator("#book-status")).to_have_text("STORY_READY", timeout=WAIT_MS)
        await expect(page.locator('.page[data-page="2"] .text')).to_have_value(
            "Page 2: the child plays outside. What fun!", timeout=WAIT_MS
        )

        await page.click("#illustrate")
        await expect(page.locator("#book")).to_have_attribute(
            "data-outcome", "PARTIAL", timeout=WAIT_MS
        )
        pictures = page.locator(".page img.illustration")
        await expect(pictures).to_have_count(2)
        for n in range(2):
            await expect(pictures.nth(n)).to_have_js_property("complete", True)
            assert await pictures.nth(n).evaluate("img => img.naturalWidth") > 0
        flagged = page.locator('.page[data-page="3"] .line')
        await expect(flagged).to_have_text("Flagged: generate: blocked: SAFETY")
        await expect(page.locator("#book-status")).to_have_text("PARTIAL")
        await expect(page.locator("#book-detail")).to_contain_text("2 of 3 pages illustrated")
        await expect(page.locator("#books li")).to_contain_text(["Mia at the Park — PARTIAL"])

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "web-live-book.png"), full_page=True)
    assert (ARTIFACTS / "web-live-book.png").stat().st_size > 10_000

"""A parent redraws a page over real HTTP: the app on a port, a real worker, the dev server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from storywink.config import Settings
from storywink.contract import BookStatus
from storywink.db.connection import Database
from tests.support.helpers import (
    create_book,
    illustrate,
    load_book,
    photo_urls,
    running_worker,
    wait_until,
)
from tests.support.web_app import api_client


def settled_redraw(database: Database, book_id: str) -> bool:
    book, pages, _ = load_book(database, book_id)
    return book.status is BookStatus.COMPLETED and pages[1].image_version == 1


async def test_the_owner_redraws_a_page_over_http_and_sees_the_new_picture(
    temporal_client: Client,
    database: Database,
    web_settings: Settings,
    web_url: str,
    tmp_path: Path,
) -> None:
    book_id = create_book(database, photo_urls(web_settings.storage_dir / "photos", 2))
    await illustrate(temporal_client, web_settings, database, book_id)
    async with api_client(web_url, "user-1") as http:
        before = (await http.get(f"/books/{book_id}")).json()["pages"][1]["image_url"]
        async with running_worker(temporal_client, web_settings, database):
            one, two = await asyncio.gather(
                http.post(f"/books/{book_id}/pages/2/redraw", json={"note": "more sun"}),
                # The second click's note is the same drawing's: give it the same note.
                http.post(f"/books/{book_id}/pages/2/redraw", json={"note": "more sun"}),
            )
            assert one.status_code == two.status_code == 202, (one.text, two.text)
            assert one.json()["run_id"] == two.json()["run_id"]  # one run for two clicks
            missing = await http.post(f"/books/{book_id}/pages/9/redraw")  # no body: as is
            too_long = await http.post(f"/books/{book_id}/pages/1/redraw", json={"note": "x" * 501})
            await wait_until(lambda: settled_redraw(database, book_id))
        page = (await http.get(f"/books/{book_id}")).json()["pages"][1]
        picture = await http.get(page["image_url"])
    async with api_client(web_url, "someone-else") as stranger:
        refused = await stranger.post(f"/books/{book_id}/pages/2/redraw", json={})

    assert missing.status_code == 404 and "has no page 9" in missing.json()["detail"]
    assert too_long.status_code == 422 and "note" in too_long.json()["detail"]
    assert page["image_url"] != before and page["change_request"] == "more sun"
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    assert refused.status_code == 404  # another parent's book is not theirs to know of

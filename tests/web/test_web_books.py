"""The book's life over real HTTP: the app on a port, a real worker on the dev server.

Create from photos, write the story, edit a page, start the illustration twice at once
(one run), follow it live to the outcome, resume with Last-Event-ID, list and page.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from temporalio.client import Client

from storywink.config import Settings
from storywink.contract import BookStatus, ModerationStatus
from storywink.db.connection import Database
from tests.support.helpers import create_book, load_book, running_worker, wait_until
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes
from tests.support.sse import collect_until_outcome, events_of, until_outcome
from tests.support.web_app import WEB_SETTINGS, api_client, photo_parts, running_app


async def wait_for_status(http: httpx.AsyncClient, book_id: str, wanted: str) -> dict[str, object]:
    async with asyncio.timeout(60):
        while True:
            book: dict[str, object] = (await http.get(f"/books/{book_id}")).json()
            if book["status"] == wanted:
                return book
            await asyncio.sleep(0.1)


@pytest.mark.each_database
async def test_a_book_from_photos_to_pictures_over_http(
    temporal_client: Client, database: Database, web_settings: Settings, web_url: str
) -> None:
    async with api_client(web_url, "parent-a") as http:
        created = await http.post(
            "/books",
            files=photo_parts(3),
            data={"title": "  Mia's Big Day ", "child_name": "Mia", "style": "vignette"},
        )
        assert created.status_code == 201, created.text
        book = created.json()
        book_id = book["id"]
        assert (book["title"], book["status"], len(book["pages"])) == (
            "Mia's Big Day",
            "DRAFT",
            3,
        )
        stored, _, _ = load_book(database, book_id)
        assert stored.user_id == "parent-a"
        photo = await http.get(book["pages"][0]["photo_url"])
        assert photo.status_code == 200 and photo.content.startswith(b"\x89PNG")

        refused = await http.post(f"/books/{book_id}/illustration")  # DRAFT: no story yet
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert "DRAFT" in refused.json()["detail"]

        async with running_worker(temporal_client, web_settings, database):
            story = await http.post(f"/books/{book_id}/story")
            assert story.status_code == 202, story.text
            await wait_for_status(http, book_id, "STORY_READY")

            bad = await http.put(f"/books/{book_id}/pages/2/text", json={"text": "A. B. C. D."})
            assert bad.status_code == 422 and "3 sentences" in bad.json()["detail"]
            edited = await http.put(
                f"/books/{book_id}/pages/2/text", json={"text": " Mia found   a shell. "}
            )
            assert edited.status_code == 200 and edited.json()["text"] == "Mia found a shell."
            missing = await http.put(f"/books/{book_id}/pages/9/text", json={"text": "Hi."})
            assert missing.status_code == 404

            async with http.stream("GET", f"/books/{book_id}/events") as stream:
                assert stream.status_code == 200
                events = events_of(stream)
                first = await anext(events)
                assert first.event == "progress" and first.json()["status"] == "STORY_READY"
                # A double click (or two replicas): both answered 202 with the same run.
                one, two = await asyncio.gather(
                    http.post(f"/books/{book_id}/illustration"),
                    http.post(f"/books/{book_id}/illustration"),
                )
                assert one.status_code == two.status_code == 202, (one.text, two.text)
                assert one.json()["workflow_id"] == two.json()["workflow_id"]
                assert one.json()["run_id"] == two.json()["run_id"]
                seen = [event async for event in until_outcome(events)]

    pages = [event.json() for event in seen if event.event == "page"]
    assert sorted(page["page_number"] for page in pages) == [1, 2, 3]
    assert all(page["outcome"] == "OK" and page["image_url"] for page in pages)
    progress = [event.json() for event in seen if event.event == "progress"]
    assert any(p["status"] == "ILLUSTRATING" for p in progress)
    (outcome,) = [event.json() for event in seen if event.event == "outcome"]
    assert (outcome["status"], outcome["pages_ok"]) == ("COMPLETED", 3)
    _, stored_pages, notes = load_book(database, book_id)
    assert [p.moderation_status for p in stored_pages] == [ModerationStatus.OK] * 3
    assert stored_pages[1].text == "Mia found a shell."
    assert len(notes) == 1  # one run, one notification

    async with api_client(web_url, "parent-a") as http:
        picture = await http.get(pages[0]["image_url"])
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
        cancel = await http.delete(f"/books/{book_id}/illustration")
        assert cancel.status_code == 409  # no run works on it any more


async def test_a_reconnect_with_last_event_id_gets_every_page_it_missed_once(
    database: Database, web_url: str, tmp_path: object
) -> None:
    book_id = create_book(database, [None] * 4, user_id="parent-a")
    with database.sessions() as session:
        from storywink.book.records import get_book

        book = get_book(session, book_id)
        book.status = BookStatus.COMPLETED
        book.claim_run_id = "run-chain-1"
        for page in book.pages:
            page.moderation_status = ModerationStatus.OK
            page.generated_image_url = f"https://cdn.example/{page.page_number}.png"
        session.commit()

    async with api_client(web_url, "parent-a") as http:
        async with http.stream("GET", f"/books/{book_id}/events") as stream:
            events = events_of(stream)
            first_page = None
            async for event in events:
                if event.event == "page":
                    first_page = event
                    break
        assert first_page is not None and first_page.id
        rest = await collect_until_outcome(
            http, f"/books/{book_id}/events", headers={"Last-Event-ID": first_page.id}
        )
        again = await collect_until_outcome(http, f"/books/{book_id}/events")

    resumed = [event.json()["page_number"] for event in rest if event.event == "page"]
    assert sorted([first_page.json()["page_number"], *resumed]) == [1, 2, 3, 4]
    assert rest[-1].event == "outcome"
    # Without Last-Event-ID every page is told, and a foreign id starts over too.
    assert len([event for event in again if event.event == "page"]) == 4


async def test_my_books_newest_first_a_page_at_a_time(database: Database, web_url: str) -> None:
    mine = [
        create_book(database, [None], title=f"Book {n}", user_id="parent-lister") for n in range(5)
    ]
    create_book(database, [None], title="Not yours", user_id="parent-other")
    async with api_client(web_url, "parent-lister") as http:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            answer = (await http.get("/books", params=params)).json()
            seen.extend(book["id"] for book in answer["books"])
            pages += 1
            cursor = answer["next_cursor"]
            if cursor is None:
                break
        bad = await http.get("/books", params={"cursor": "not-a-cursor"})
    assert seen == list(reversed(mine)) and pages == 3
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert json.loads(bad.text)["status"] == 422


async def test_cancel_stops_the_run_and_the_stream_tells_the_settled_book(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(**WEB_SETTINGS)
    fakes.gemini.set_latency(30)  # every page is still in its model call when cancelled
    book_id = pipeline.book(3, photos="cancel", user_id="parent-cancel")
    async with (
        running_app(pipeline.settings) as web_url,
        pipeline.worker(),
        api_client(web_url, "parent-cancel") as http,
    ):
        started = await http.post(f"/books/{book_id}/illustration")
        assert started.status_code == 202
        await wait_for_status(http, book_id, "ILLUSTRATING")
        await wait_until(lambda: fakes.gemini.call_count == 3)  # all in their model call
        cancelled = await http.delete(f"/books/{book_id}/illustration")
        events = await collect_until_outcome(http, f"/books/{book_id}/events")
    assert cancelled.status_code == 202 and cancelled.json()["cancelled"] is True
    outcome = events[-1].json()
    # PARTIAL, by the finalize rule: its pages have text (books.book_status_for).
    assert (outcome["status"], outcome["pages_ok"], outcome["pages_failed"]) == ("PARTIAL", 0, 3)
    pages = [event.json() for event in events if event.event == "page"]
    assert [page["outcome"] for page in pages] == ["FAILED"] * 3
    assert all(page["reason"].startswith("cancelled:") for page in pages)

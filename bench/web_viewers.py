"""The viewers of `bench web`, in a process of their own so that their event parsing does
not delay the latency measurements: open `per_book` event streams on each book, say
`open` once every stream has its first event, hold them until stdin closes, then print
how many page events they got.

python -m bench.web_viewers URL PER_BOOK BOOK_ID... (the token in BENCH_WEB_TOKEN)
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from tests.support.sse import events_of


async def main(url: str, per_book: int, book_ids: list[str]) -> int:
    headers = {"Authorization": f"Bearer {os.environ['BENCH_WEB_TOKEN']}"}
    limits = httpx.Limits(max_connections=len(book_ids) * per_book + 10)
    opened = 0
    page_events = 0
    all_open = asyncio.Event()
    wanted = len(book_ids) * per_book

    async def hold(http: httpx.AsyncClient, book_id: str) -> None:
        nonlocal opened, page_events
        async with http.stream("GET", f"/books/{book_id}/events") as response:
            response.raise_for_status()
            first = True
            async for event in events_of(response):
                if first:
                    first = False
                    opened += 1
                    if opened == wanted:
                        all_open.set()
                if event.event == "page":
                    page_events += 1

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:
        streams = [
            asyncio.create_task(hold(http, book_ids[n % len(book_ids)])) for n in range(wanted)
        ]
        await all_open.wait()
        print("open", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the bench closes it
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    print(page_events, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])))

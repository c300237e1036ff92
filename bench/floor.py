"""The floor of a page's CPU: the Gemini and Cloudinary SDK calls alone, in a loop.

`python -m bench.floor COUNT CONCURRENCY PHOTO_URL` in the environment of a bench worker
(the same fakes, the same SDK clients built the same way): the photo and the style
reference fetched once, then COUNT times the image call and the upload, CONCURRENCY at
once. Prints one JSON line: seconds and this process's CPU seconds for the loop.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from storywink.config import load_settings
from storywink.illustration.styles import resolve_style
from storywink.providers.base import IllustrationJob
from storywink.providers.factory import build_providers

STYLE = "vignette"
WARM_UP = 3


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _loop(count: int, concurrency: int, photo_url: str) -> dict[str, float]:
    settings = load_settings()
    providers = build_providers(settings)
    style = resolve_style(STYLE, settings.style_assets_url)
    photo = await providers.fetcher.fetch(photo_url, "photo")
    reference = await providers.fetcher.fetch(style.reference_for(False), "style reference")
    job = IllustrationJob(
        prompt=f"Redraw this photo in the {STYLE} style.",
        photo=photo,
        style_reference=reference,
        style_key=STYLE,
        text="A page.",
        title="Floor",
        is_title_page=False,
    )
    free = asyncio.Semaphore(concurrency)

    async def page(n: int) -> None:
        async with free:
            image = await providers.illustrator.illustrate(job)
            await providers.store.store(image, f"floor/page_{n}", tags=["floor"], context={})

    await asyncio.gather(*(page(n) for n in range(WARM_UP)))
    started, cpu = time.monotonic(), _cpu()
    await asyncio.gather(*(page(n) for n in range(count)))
    result = {"seconds": time.monotonic() - started, "cpu_seconds": _cpu() - cpu}
    await providers.aclose()
    return result


if __name__ == "__main__":
    count, concurrency, photo_url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    print(json.dumps(asyncio.run(_loop(count, concurrency, photo_url))))

"""The offline story writer: a deterministic, readable story without any model.

Used when no Gemini key is set, so the demo shows the whole journey offline. The same
book always gets the same story.
"""

from __future__ import annotations

import hashlib
from typing import Final

from storywink.providers.story import PageStory, StoryAnswer, StoryJob

_SCENES: Final = (
    ("{name} woke up early, full of ideas.", "{name} stretching in morning light, smiling"),
    (
        "Outside, the sky was big and bright. {name} ran to see what the day would bring.",
        "{name} running outdoors under a wide sky",
    ),
    (
        "{name} found something small and wonderful. It was a secret worth keeping!",
        "close-up of {name} looking at a small treasure",
    ),
    ("Friends came to play, and everybody laughed.", "a happy group around {name}, laughing"),
    (
        "{name} climbed higher than ever before. The whole world looked tiny from up there.",
        "{name} high up, looking down, proud",
    ),
    (
        "A little rain fell, but {name} did not mind. Puddles are for jumping!",
        "{name} splashing in puddles, drops flying",
    ),
    ("{name} shared a snack and a story.", "{name} sitting and sharing, cosy and calm"),
    (
        "When the sun went low, the shadows grew long. {name} waved goodbye to the day.",
        "golden evening light, long shadows, {name} waving",
    ),
)
_ENDING: Final = (
    "At last {name} snuggled into bed. What a day it had been!",
    "{name} in bed, sleepy and content, soft night colours",
)


class OfflineStoryWriter:
    name = "offline"
    uses_photos = False

    async def write(self, job: StoryJob) -> StoryAnswer:
        name = job.child_name.strip() or "Our hero"
        story = [page for page in job.pages if not page.is_title_page]
        # The book decides where in the list of scenes its story starts.
        start = int(hashlib.sha256(job.title.encode()).hexdigest(), 16) % len(_SCENES)
        pages: list[PageStory] = []
        told = 0
        for page in job.pages:
            if page.is_title_page:
                pages.append(
                    PageStory(
                        page_number=page.page_number,
                        text=job.title,
                        illustration_notes=f"{name} in the middle of the cover, {job.tone}",
                    )
                )
                continue
            told += 1
            last = told == len(story) and len(story) > 1
            text, notes = _ENDING if last else _SCENES[(start + told - 1) % len(_SCENES)]
            pages.append(
                PageStory(
                    page_number=page.page_number,
                    text=text.format(name=name),
                    illustration_notes=notes.format(name=name),
                )
            )
        return StoryAnswer(title=job.title, pages=pages)

"""The sample book of the demo: a story and its "photos", all drawn procedurally.

The photos are painted with Pillow (gradients, simple shapes, a child figure, grain and
a little blur so they read as snapshots), so the demo needs no internet and the
repository holds no binary assets. Everything is deterministic.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter

SAMPLE_CHILD_NAME: Final = "Mia"
SAMPLE_TITLE: Final = "Mia's Big Little Adventures"
PHOTO_SIZE: Final = (640, 480)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class _Scene:
    draw: Callable[[Image.Image, random.Random], None]
    text: str


def write_sample_photos(directory: Path, count: int = 6) -> list[Path]:
    """Write `count` JPEG photos named 01.jpg, 02.jpg... into `directory`; return paths."""
    if count < 1:
        raise ValueError("count must be at least 1")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"{index + 1:02d}.jpg"
        path.write_bytes(sample_photo_bytes(index))
        paths.append(path)
    return paths


@functools.lru_cache(maxsize=64)
def sample_photo_bytes(index: int, image_format: str = "JPEG") -> bytes:
    """`sample_photo(index)` encoded as JPEG (or PNG). Painting and encoding one costs tens
    of milliseconds and the result never changes: each is made once per process."""
    out = io.BytesIO()
    sample_photo(index).save(out, format=image_format, quality=88)
    return out.getvalue()


def sample_photo(index: int) -> Image.Image:
    """The photo of page `index + 1` (0-based index); scenes repeat, varied, after the last."""
    rng = random.Random(f"storywink-sample-{index}")
    image = Image.new("RGB", PHOTO_SIZE)
    _scene(index).draw(image, rng)
    return _photographic(image, rng)


def sample_story(count: int) -> list[str]:
    """Page texts: page 1 is the title page (its text is the title), then 1-3 sentences each."""
    if count < 1:
        raise ValueError("count must be at least 1")
    texts = [SAMPLE_TITLE]
    for index in range(1, count):
        text = _scene(index).text
        texts.append(text if index < len(_SCENES) else f"Again! {text}")
    return texts


def _scene(index: int) -> _Scene:
    """Page 1 is the portrait for the title; later pages cycle through the story scenes."""
    if index == 0:
        return _SCENES[0]
    return _SCENES[1 + (index - 1) % (len(_SCENES) - 1)]


# -- painting helpers -------------------------------------------------------------------


def _vertical_gradient(
    image: Image.Image, box: tuple[int, int, int, int], top: RGB, bottom: RGB
) -> None:
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    span = max(y1 - y0 - 1, 1)
    for y in range(y0, y1):
        t = (y - y0) / span
        colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line((x0, y, x1, y), fill=colour)


def _sun(draw: ImageDraw.ImageDraw, x: int, y: int, radius: int, colour: RGB) -> None:
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def _cloud(draw: ImageDraw.ImageDraw, x: int, y: int, scale: int) -> None:
    for dx, dy, r in ((0, 0, 1.0), (1.1, -0.4, 1.2), (2.2, 0, 0.9)):
        cx, cy, radius = x + dx * scale, y + dy * scale, r * scale
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(250, 250, 252))


def _tree(draw: ImageDraw.ImageDraw, x: int, ground: int, height: int) -> None:
    draw.rectangle(
        (x - height // 14, ground - height // 2, x + height // 14, ground), fill=(110, 78, 48)
    )
    r = height // 3
    for dx, dy in ((0, -height * 2 // 3), (-r // 2, -height // 2), (r // 2, -height // 2)):
        draw.ellipse((x + dx - r, ground + dy - r, x + dx + r, ground + dy + r), fill=(58, 128, 62))


def _child(
    draw: ImageDraw.ImageDraw,
    x: int,
    feet: int,
    height: int,
    *,
    shirt: RGB = (226, 84, 96),
    arms_up: bool = False,
) -> None:
    """A simple child: legs, dress/shirt, arms, head, hair, eyes and a smile."""
    skin, hair, trousers = (241, 196, 160), (92, 58, 34), (58, 82, 140)
    unit = height / 10
    head_r = unit * 1.4
    head_y = feet - height + head_r
    # legs
    for dx in (-0.7, 0.7):
        draw.rectangle(
            (x + (dx - 0.35) * unit, feet - 3.6 * unit, x + (dx + 0.35) * unit, feet), fill=trousers
        )
        draw.ellipse(
            (x + (dx - 0.6) * unit, feet - 0.5 * unit, x + (dx + 0.6) * unit, feet + 0.3 * unit),
            fill=(60, 50, 50),
        )
    # body
    draw.polygon(
        [
            (x - 1.1 * unit, head_y + 1.6 * unit),
            (x + 1.1 * unit, head_y + 1.6 * unit),
            (x + 1.9 * unit, feet - 3.2 * unit),
            (x - 1.9 * unit, feet - 3.2 * unit),
        ],
        fill=shirt,
    )
    # arms
    shoulder = head_y + 2.0 * unit
    hand_dy = -2.4 * unit if arms_up else 2.6 * unit
    for side in (-1, 1):
        hand = (x + side * 2.9 * unit, shoulder + hand_dy)
        draw.line(
            (x + side * 1.0 * unit, shoulder, *hand), fill=shirt, width=max(int(unit * 0.7), 2)
        )
        draw.ellipse(
            (
                hand[0] - 0.4 * unit,
                hand[1] - 0.4 * unit,
                hand[0] + 0.4 * unit,
                hand[1] + 0.4 * unit,
            ),
            fill=skin,
        )
    # head and hair
    draw.ellipse(
        (x - head_r * 1.08, head_y - head_r * 1.1, x + head_r * 1.08, head_y + head_r * 0.4),
        fill=hair,
    )
    draw.ellipse((x - head_r, head_y - head_r, x + head_r, head_y + head_r), fill=skin)
    draw.chord(
        (x - head_r * 1.05, head_y - head_r * 1.15, x + head_r * 1.05, head_y + head_r * 0.2),
        180,
        360,
        fill=hair,
    )
    # face
    for dx in (-0.45, 0.45):
        ex = x + dx * head_r
        draw.ellipse(
            (ex - 0.12 * unit, head_y + 0.05 * unit, ex + 0.12 * unit, head_y + 0.3 * unit),
            fill=(40, 30, 30),
        )
    draw.arc(
        (x - 0.5 * head_r, head_y + 0.1 * head_r, x + 0.5 * head_r, head_y + 0.7 * head_r),
        20,
        160,
        fill=(170, 60, 60),
        width=max(int(unit * 0.15), 1),
    )


def _photographic(image: Image.Image, rng: random.Random) -> Image.Image:
    """Soft focus, grain and a darker edge, so the drawing reads like a snapshot."""
    soft = image.filter(ImageFilter.GaussianBlur(1.2))
    noise = Image.frombytes("L", image.size, rng.randbytes(image.width * image.height))
    noise = noise.point(lambda value: 128 + (value - 128) // 6)
    grainy = ImageChops.add(soft, Image.merge("RGB", [noise] * 3), scale=1.0, offset=-128)
    edge = Image.new("L", image.size, 0)
    w, h = image.size
    ImageDraw.Draw(edge).ellipse((-w // 4, -h // 4, w + w // 4, h + h // 4), fill=255)
    edge = edge.filter(ImageFilter.GaussianBlur(min(w, h) // 6))
    darker = grainy.point(lambda value: value * 3 // 4)
    return Image.composite(grainy, darker, edge)


# -- the scenes -------------------------------------------------------------------------


def _portrait(image: Image.Image, rng: random.Random) -> None:
    w, h = image.size
    _vertical_gradient(image, (0, 0, w, h), (250, 214, 165), (236, 150, 120))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = rng.randrange(w), rng.randrange(h // 2), rng.randrange(8, 22)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 236, 200))
    _child(draw, w // 2, h + 40, int(h * 1.0), shirt=(120, 90, 200), arms_up=True)


def _park(image: Image.Image, rng: random.Random) -> None:
    w, h = image.size
    _vertical_gradient(image, (0, 0, w, h * 3 // 5), (120, 180, 240), (200, 228, 250))
    _vertical_gradient(image, (0, h * 3 // 5, w, h), (110, 180, 80), (70, 140, 55))
    draw = ImageDraw.Draw(image)
    _sun(draw, w - 90, 80, 40, (255, 228, 110))
    _cloud(draw, 80 + rng.randrange(60), 70, 28)
    _tree(draw, 110, h * 3 // 5 + 30, 260)
    _tree(draw, w - 120, h * 3 // 5 + 10, 200)
    _child(draw, w // 2, h - 50, 230, arms_up=True)


def _beach(image: Image.Image, rng: random.Random) -> None:
    w, h = image.size
    _vertical_gradient(image, (0, 0, w, h // 2), (100, 170, 235), (190, 225, 245))
    _vertical_gradient(image, (0, h // 2, w, h * 2 // 3), (40, 120, 180), (80, 170, 200))
    _vertical_gradient(image, (0, h * 2 // 3, w, h), (240, 215, 160), (220, 190, 130))
    draw = ImageDraw.Draw(image)
    _sun(draw, 100, 80, 45, (255, 240, 150))
    _cloud(draw, w - 220 + rng.randrange(40), 90, 24)
    draw.polygon(
        [(w - 150, h - 60), (w - 90, h - 60), (w - 100, h - 120), (w - 140, h - 120)],
        fill=(250, 120, 40),
    )
    _child(draw, w // 2 - 40, h - 40, 220, shirt=(250, 200, 40))


def _dog(image: Image.Image, rng: random.Random) -> None:
    w, h = image.size
    _vertical_gradient(image, (0, 0, w, h // 2), (170, 200, 230), (220, 235, 245))
    _vertical_gradient(image, (0, h // 2, w, h), (130, 190, 90), (90, 150, 60))
    draw = ImageDraw.Draw(image)
    _cloud(draw, 60 + rng.randrange(80), 60, 30)
    _child(draw, w // 3, h - 50, 240, shirt=(60, 160, 200))
    dog, ground = (176, 120, 70), h - 60
    x = w * 2 // 3
    draw.ellipse((x - 80, ground - 90, x + 60, ground - 30), fill=dog)
    draw.ellipse((x + 30, ground - 140, x + 110, ground - 70), fill=dog)
    draw.ellipse((x + 25, ground - 140, x + 55, ground - 85), fill=(120, 80, 45))
    draw.ellipse((x + 80, ground - 115, x + 92, ground - 103), fill=(30, 25, 25))
    draw.ellipse((x + 104, ground - 100, x + 116, ground - 88), fill=(30, 25, 25))
    for dx in (-60, -30, 20, 45):
        draw.rectangle((x + dx, ground - 45, x + dx + 16, ground), fill=dog)
    draw.line((x - 78, ground - 70, x - 120, ground - 110), fill=dog, width=10)


def _birthday(image: Image.Image, rng: random.Random) -> None:
    w, h = image.size
    _vertical_gradient(image, (0, 0, w, h), (250, 226, 236), (236, 196, 214))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x = rng.randrange(40, w - 40)
        colour = rng.choice([(240, 80, 90), (80, 160, 240), (250, 210, 60)])
        draw.ellipse((x - 28, 30, x + 28, 100), fill=colour)
        draw.line((x, 100, x, 170), fill=(120, 120, 120), width=2)
    _child(draw, w // 2, h - 70, 260, shirt=(240, 120, 170), arms_up=True)
    draw.rectangle((0, h - 150, w, h), fill=(180, 120, 80))
    draw.rectangle((w // 2 - 110, h - 230, w // 2 + 110, h - 150), fill=(250, 245, 235))
    draw.rectangle((w // 2 - 110, h - 200, w // 2 + 110, h - 185), fill=(240, 110, 150))
    for index in range(5):
        x = w // 2 - 80 + index * 40
        draw.rectangle((x - 4, h - 270, x + 4, h - 230), fill=(120, 180, 250))
        draw.ellipse((x - 7, h - 290, x + 7, h - 268), fill=(255, 200, 60))


def _bedtime(image: Image.Image, rng: random.Random) -> None:
    w, h = image.size
    _vertical_gradient(image, (0, 0, w, h), (52, 56, 98), (30, 32, 64))
    draw = ImageDraw.Draw(image)
    draw.rectangle((w - 250, 50, w - 60, 220), fill=(20, 24, 60), outline=(200, 190, 160), width=8)
    for _ in range(14):
        x, y = rng.randrange(w - 240, w - 70), rng.randrange(60, 210)
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(255, 250, 210))
    _sun(draw, w - 110, 110, 30, (250, 240, 190))
    draw.rectangle((40, h - 180, w - 200, h - 60), fill=(120, 80, 60))
    draw.rectangle((60, h - 220, w - 220, h - 150), fill=(230, 230, 250))
    _child(draw, 170, h + 90, 260, shirt=(160, 200, 240))
    draw.rectangle((60, h - 200, w - 220, h - 130), fill=(110, 140, 220))


_SCENES: Final = (
    _Scene(_portrait, SAMPLE_TITLE),
    _Scene(_park, f"{SAMPLE_CHILD_NAME} runs across the park. The trees wave hello in the wind."),
    _Scene(
        _beach, f"At the beach, {SAMPLE_CHILD_NAME} builds a sandcastle. The waves come to look."
    ),
    _Scene(
        _dog, f"Biscuit the dog wants to play. {SAMPLE_CHILD_NAME} throws the ball far, far away!"
    ),
    _Scene(
        _birthday,
        f"Today {SAMPLE_CHILD_NAME} is five. She makes a wish and blows out every candle.",
    ),
    _Scene(
        _bedtime, f"The moon peeks in to say goodnight. {SAMPLE_CHILD_NAME} dreams of tomorrow."
    ),
)

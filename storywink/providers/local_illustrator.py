"""The offline illustrator: redraws the photo in the book's style with Pillow.

No model, no network: a square crop of the photo is simplified, posterised into the
style's palette, outlined in the style's ink, faded into a white border, and the page
text (or the book title, large) is set in the border. Same input, same PNG.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Sequence
from itertools import combinations
from typing import Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from storywink.illustration.styles import STYLES, Style
from storywink.providers.base import GeneratedImage, IllustrationJob, PermanentError

DEFAULT_SIZE: Final = 768
MIN_SIZE: Final = 128
_PAPER: Final = (255, 255, 255)
_SMALLEST_FONT: Final = 9
_LINE_SHARE: Final = 0.05  # share of the picture drawn as ink lines, at most
_MIN_EDGE: Final = 24
_MAX_CAPTION_CHARS: Final = 600  # storywink.story.answer.MAX_PAGE_TEXT_CHARS

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class LocalIllustrator:
    """Draws pages on the CPU, off the event loop; `size` is the square side in pixels."""

    name = "local"
    uses_style_reference = False

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < MIN_SIZE:
            raise ValueError(f"size must be at least {MIN_SIZE} pixels, not {size}")
        self.size = size

    async def illustrate(self, job: IllustrationJob) -> GeneratedImage:
        style = STYLES.get(job.style_key)
        if style is None:
            raise PermanentError(f"unknown art style {job.style_key!r}")
        data = await asyncio.to_thread(render_page, job, style, self.size)
        return GeneratedImage(data=data, mime_type="image/png")


def render_page(job: IllustrationJob, style: Style, size: int) -> bytes:
    """The whole drawing, synchronous: PNG bytes of a `size` x `size` page."""
    photo = _open_photo(job.photo.data, size)
    picture = _stylise(photo, style)
    page = _vignette(picture, text_band=_band_height(size, job.is_title_page))
    caption = job.title if job.is_title_page else (job.text or "")
    _draw_caption(page, _bounded(caption), _hex(style.ink), job.is_title_page)
    out = io.BytesIO()
    page.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _open_photo(data: bytes, size: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size, size))  # JPEG: decode big photos at a reduced scale
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PermanentError(f"photo is not a decodable image ({type(exc).__name__})") from None
    return ImageOps.fit(upright, (size, size), Image.Resampling.LANCZOS)


def _stylise(photo: Image.Image, style: Style) -> Image.Image:
    """Flat palette colours, a hint of the photo's own colours, and ink outlines."""
    smooth = photo.filter(ImageFilter.GaussianBlur(photo.width / 300))
    flat = _posterise(smooth, style.palette)
    painted = _add_grain(Image.blend(flat, smooth, 0.3), seed=style.key)
    ink = Image.new("RGB", photo.size, _hex(style.ink))
    return Image.composite(ink, painted, _line_art(smooth))


def _posterise(image: Image.Image, palette: Sequence[str]) -> Image.Image:
    """Map every pixel to the nearest colour of the palette or of a mix of two of them.

    Done at a quarter of the size, after a median filter, so photo grain does not turn
    into speckles; the upscale softens region borders like a wash.
    """
    base = [_hex(colour) for colour in palette]
    colours = (base + [_mix(a, b) for a, b in combinations(base, 2)])[:256]
    palette_image = Image.new("P", (1, 1))
    palette_image.putpalette([channel for colour in colours for channel in colour])
    small = image.reduce(4).filter(ImageFilter.MedianFilter(3))
    flat = small.quantize(palette=palette_image, dither=Image.Dither.NONE)
    flat = flat.filter(ImageFilter.ModeFilter(3)).convert("RGB")
    return flat.resize(image.size, Image.Resampling.BICUBIC)


def _line_art(image: Image.Image) -> Image.Image:
    """A mask of the strongest edges, softened like a brush line.

    The morphological gradient (max - min over 3x3) of a blurred grey image: steps between
    regions give strong, 2-3 px wide lines, while photo grain stays below the threshold.
    """
    half = image.reduce(2).convert("L").filter(ImageFilter.GaussianBlur(1.2))
    edges = ImageChops.subtract(
        half.filter(ImageFilter.MaxFilter(3)), half.filter(ImageFilter.MinFilter(3))
    )
    threshold = max(_percentile(edges, _LINE_SHARE), _MIN_EDGE)
    lines = edges.point(lambda value: 255 if value > threshold else 0)
    lines = lines.resize(image.size, Image.Resampling.BILINEAR)
    return lines.filter(ImageFilter.GaussianBlur(0.8))


def _percentile(image: Image.Image, top_share: float) -> int:
    """The grey level above which `top_share` of the pixels lie."""
    histogram = image.histogram()
    remaining = top_share * image.width * image.height
    for level in range(255, -1, -1):
        remaining -= histogram[level]
        if remaining <= 0:
            return level
    return 0


def _add_grain(image: Image.Image, seed: str) -> Image.Image:
    """Paper grain from a seeded generator, so the page is the same on every run."""
    noise_bytes = random.Random(seed).randbytes(image.width * image.height)
    noise = Image.frombytes("L", image.size, noise_bytes).filter(ImageFilter.GaussianBlur(0.6))
    grain = Image.merge("RGB", [noise, noise, noise])
    return ImageChops.blend(image, ImageChops.multiply(image, grain), 0.06)


def _vignette(picture: Image.Image, text_band: int) -> Image.Image:
    """Fade the picture into white paper, leaving the bottom band white for the text."""
    size = picture.width
    margin = size // 16
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (margin, margin, size - margin, size - text_band), radius=size // 6, fill=255
    )
    mask = mask.filter(ImageFilter.GaussianBlur(size / 28))
    paper = Image.new("RGB", picture.size, _PAPER)
    return Image.composite(picture, paper, mask)


def _bounded(caption: str) -> str:
    """At most `_MAX_CAPTION_CHARS` (what a page may hold: the checks at the door), so
    the drawing's time is bounded whatever text reaches it."""
    caption = " ".join(caption.split())
    if len(caption) <= _MAX_CAPTION_CHARS:
        return caption
    return caption[: _MAX_CAPTION_CHARS - 1].rstrip() + "…"


def _band_height(size: int, is_title_page: bool) -> int:
    return size * 24 // 100 if is_title_page else size * 20 // 100


def _draw_caption(page: Image.Image, caption: str, ink: RGB, is_title_page: bool) -> None:
    """Set `caption` centred in the bottom band, in the largest font size that fits."""
    if not caption:
        return
    size = page.width
    band = _band_height(size, is_title_page)
    draw = ImageDraw.Draw(page)
    font, lines, line_height = _fit_caption(
        draw,
        caption,
        width=size - size // 8,
        height=band - size // 32,
        largest=max(size // 11 if is_title_page else size // 24, _SMALLEST_FONT),
    )
    top = size - band + (band - line_height * len(lines)) // 2
    for index, line in enumerate(lines):
        y = top + index * line_height + line_height // 2
        draw.text((size // 2, y), line, fill=ink, font=font, anchor="mm")


def _fit_caption(
    draw: ImageDraw.ImageDraw, caption: str, *, width: int, height: int, largest: int
) -> tuple[Font, list[str], int]:
    """Font, wrapped lines and line height; at the smallest size, extra lines are cut."""
    for font_size in range(largest, _SMALLEST_FONT - 1, -1):
        font = ImageFont.load_default(size=font_size)
        lines = _wrap(draw, caption, font, width)
        line_height = font_size * 5 // 4
        if line_height * len(lines) <= height:
            return font, lines, line_height
    fitting = max(height // line_height, 1)
    if len(lines) > fitting:
        lines = [*lines[: fitting - 1], _ellipsize(draw, lines[fitting - 1], font, width)]
    return font, lines, line_height


def _ellipsize(draw: ImageDraw.ImageDraw, line: str, font: Font, width: int) -> str:
    while line and draw.textlength(line + "…", font=font) > width:
        line = line[:-1]
    return line + "…"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> list[str]:
    """Greedy word wrap by measured width; a word longer than a line is cut."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while draw.textlength(current, font=font) > width and len(current) > 1:
            cut = _longest_fitting(draw, current, font, width)
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines


def _longest_fitting(draw: ImageDraw.ImageDraw, word: str, font: Font, width: int) -> int:
    """How many leading characters of `word` fit in `width` (at least 1), by bisection."""
    low, high = 1, len(word)
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(word[:middle], font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def _hex(colour: str) -> RGB:
    value = colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def _mix(a: RGB, b: RGB) -> RGB:
    return ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2, (a[2] + b[2]) // 2)
